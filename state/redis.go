package state

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStore is the Store that several gateways share. Every call is
// bounded by timeout (go-redis's own retries are off: one try, then the
// caller's policy), and every error names the server and wraps
// ErrUnavailable.
type redisStore struct {
	c       *redis.Client
	server  string
	timeout time.Duration
}

// ParseURL checks a [state] url for Redis: redis://[user:pass@]host:port/db,
// rediss:// (TLS) or unix:///path.sock?db=N.
func ParseURL(u string) error {
	_, err := redis.ParseURL(u)
	return err
}

func openRedis(o Options) (*redisStore, error) {
	ro, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	ro.DialTimeout = o.Timeout
	ro.ReadTimeout = o.Timeout
	ro.WriteTimeout = o.Timeout
	ro.PoolTimeout = o.Timeout
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1
	ro.PoolSize = o.PoolSize
	// Only what the Store needs: no CLIENT SETINFO, which Valkey and older
	// servers may refuse.
	ro.DisableIdentity = true
	return &redisStore{c: redis.NewClient(ro), server: serverName(ro), timeout: o.Timeout}, nil
}

// serverName is how errors and probes name a server: its address, never
// the password.
func serverName(ro *redis.Options) string {
	if ro.Network == "unix" {
		return "unix:" + ro.Addr
	}
	return ro.Addr
}

// Server names the Redis server of url (checked by ParseURL) without its
// password: "127.0.0.1:6379", "unix:/run/redis.sock".
func Server(url string) string {
	ro, err := redis.ParseURL(url)
	if err != nil {
		return url
	}
	return serverName(ro)
}

// Ping asks the Redis server of o for PONG, within o.Timeout (config
// check --probe).
func Ping(ctx context.Context, o Options) (string, error) {
	s, err := openRedis(o)
	if err != nil {
		return "", err
	}
	defer s.Close()
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	pong, err := s.c.Ping(ctx).Result()
	if err != nil {
		return "", s.fail("PING", "", err)
	}
	return pong, nil
}

func (s *redisStore) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *redisStore) fail(op, key string, err error) error {
	return fmt.Errorf("state: redis %s: %s %q: %w: %w", s.server, op, key, ErrUnavailable, err)
}

func (s *redisStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.fail("GET", key, err)
	}
	return b, true, nil
}

func (s *redisStore) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if ttl < 0 {
		ttl = 0
	}
	if err := s.c.Set(ctx, key, val, ttl).Err(); err != nil {
		return s.fail("SET", key, err)
	}
	return nil
}

func (s *redisStore) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.c.Del(ctx, keys...).Err(); err != nil {
		return s.fail("DEL", keys[0], err)
	}
	return nil
}

// globEscape makes prefix literal in a SCAN MATCH pattern.
var globEscape = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// Keys walks the keyspace with SCAN, which never blocks the server as
// KEYS would; the whole walk shares the one timeout.
func (s *redisStore) Keys(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	seen := map[string]struct{}{}
	it := s.c.Scan(ctx, 0, globEscape.Replace(prefix)+"*", 1000).Iterator()
	for it.Next(ctx) {
		seen[it.Val()] = struct{}{}
	}
	if err := it.Err(); err != nil {
		return nil, s.fail("SCAN", prefix, err)
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

func (s *redisStore) Incr(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var incr *redis.IntCmd
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.IncrBy(ctx, key, n)
		if ttl > 0 {
			p.Do(ctx, "PEXPIRE", key, max(ttl.Milliseconds(), 1), "NX")
		}
		return nil
	})
	if err != nil {
		return 0, s.fail("INCRBY", key, err)
	}
	return incr.Val(), nil
}

// rateScript is NextRate in Lua, run atomically by the server on the
// record encodeRate writes. Now comes from the caller, not the server's
// clock, so that both backends compute the same numbers.
var rateScript = redis.NewScript(`
local count = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local strict = ARGV[5] == '1'
local ttl = tonumber(ARGV[6])
local rate = count
local v = redis.call('GET', KEYS[1])
if v then
  local r0, t0 = string.match(v, '^(%S+) (%S+)$')
  r0 = tonumber(r0)
  t0 = tonumber(t0)
  if not r0 or not t0 then
    return redis.error_reply('rate record ' .. v .. ' is not "RATE TIME"')
  end
  local interval = (now - t0) / 1e6
  if interval < 1e-9 then interval = 1e-9 end
  local iop = interval / period
  local a = math.exp(-iop)
  rate = (1 - a) * count / iop + a * r0
  if rate < count then rate = count end
end
if strict or rate < limit then
  redis.call('SET', KEYS[1], string.format('%.17g %d', rate, now), 'PX', ttl)
end
return string.format('%.17g', rate)
`)

func (s *redisStore) Rate(ctx context.Context, key string, r RateOptions) (float64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	strict := "0"
	if r.Strict {
		strict = "1"
	}
	ttl := rateTTL(r.Period).Milliseconds()
	if ttl < 1 {
		ttl = 1
	}
	out, err := rateScript.Run(ctx, s.c, []string{key},
		strconv.FormatFloat(r.Count, 'g', 17, 64),
		strconv.FormatFloat(r.Limit, 'g', 17, 64),
		strconv.FormatFloat(r.Period.Seconds(), 'g', 17, 64),
		r.Now.UnixMicro(), strict, ttl).Text()
	if err != nil {
		return 0, s.fail("EVALSHA rate", key, err)
	}
	rate, err := strconv.ParseFloat(out, 64)
	if err != nil {
		return 0, s.fail("EVALSHA rate", key, err)
	}
	return rate, nil
}

func (s *redisStore) Close() error { return s.c.Close() }
