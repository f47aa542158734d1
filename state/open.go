package state

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Options are [state], checked by config.
type Options struct {
	// URL is "" for the embedded store, or a Redis URL (see ParseURL).
	URL string
	// File is the embedded store's bbolt file; "" keeps it in memory
	// only (-bh, tests).
	File string
	// Timeout bounds every call to Redis.
	Timeout time.Duration
	// PoolSize is the most connections to Redis.
	PoolSize int
}

// File is where the embedded store of a gateway with dataDir lives.
func File(dataDir string) string { return filepath.Join(dataDir, "db", "state.db") }

// Open opens the store o names: Redis for a URL, else the embedded one,
// loading File's unexpired records.
func Open(o Options) (Store, error) {
	if o.URL == "" {
		return openEmbedded(o.File)
	}
	if !IsRedis(o.URL) {
		return nil, fmt.Errorf("state: url %q: not redis://, rediss:// or unix://", o.URL)
	}
	return openRedis(o)
}

// IsRedis tells whether url names a Redis server.
func IsRedis(url string) bool {
	for _, p := range []string{"redis://", "rediss://", "unix://"} {
		if strings.HasPrefix(url, p) {
			return true
		}
	}
	return false
}
