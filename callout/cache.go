package callout

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	bolt "go.etcd.io/bbolt"
)

// Cache keys: one record per address, and per domain the results that
// speak for all its addresses (Exim's callout hints database).
const (
	keyAddress     = "a:"            // local@domain
	keyRandom      = "d:random:"     // the random local part was accepted (domain accepts all) or refused
	keyPostmaster  = "d:postmaster:" // postmaster@domain accepted or refused
	keyMailFrom    = "d:mailfrom:"   // MAIL FROM refused: the domain refuses our callouts' sender
	keyUnreachable = "d:unreachable:"
)

var bucketName = []byte("callout")

// record is one cached answer, stored as JSON in bbolt.
type record struct {
	Verdict Verdict   `json:"verdict"`
	Reply   string    `json:"reply,omitempty"`
	Host    string    `json:"host,omitempty"`
	Stored  time.Time `json:"stored"`
	Expires time.Time `json:"expires"`
}

// keyed is a record to store under key.
type keyed struct {
	key string
	rec record
}

// decodeRecord reads a record from the cache file, which a crash or
// another version may have left in any state.
func decodeRecord(b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, err
	}
	switch r.Verdict {
	case Accept, Reject, Unknown:
	default:
		return record{}, fmt.Errorf("verdict %d out of range", r.Verdict)
	}
	if r.Stored.IsZero() || r.Expires.Before(r.Stored) {
		return record{}, fmt.Errorf("stored %v, expires %v: not a lifetime", r.Stored, r.Expires)
	}
	return r, nil
}

// cache keeps every live record in memory, in an LRU bounded in size
// whose entries are never refreshed by reading, so the oldest stored go
// first; the bbolt file, when configured, mirrors it so it survives a
// restart. Each record expires at its own time; the LRU's expiry, the
// longest TTL, only bounds how long a dead one stays in memory unread.
type cache struct {
	lru  *expirable.LRU[string, record]
	db   *bolt.DB
	file string
	logf func(string)

	evMu    sync.Mutex
	evicted []string // dropped by the LRU, still to be deleted from the file
}

// openCache opens (creating) file, "" for memory only, keeping at most max
// records of which none lives longer than maxTTL.
func openCache(file string, max int, maxTTL time.Duration, logf func(string)) (*cache, error) {
	c := &cache{file: file, logf: logf}
	c.lru = expirable.NewLRU[string, record](max, c.dropped, maxTTL)
	if file == "" {
		return c, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		return nil, fmt.Errorf("callout: cache directory: %w", err)
	}
	// The timeout turns a second daemon on the same file into an error
	// instead of a hang on bbolt's file lock.
	db, err := bolt.Open(file, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("callout: open cache %s: %w", file, err)
	}
	c.db = db
	now := time.Now()
	var live []keyed
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName)
		if err != nil {
			return err
		}
		var dead [][]byte
		err = b.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil || !now.Before(r.Expires) {
				dead = append(dead, append([]byte(nil), k...))
				return nil
			}
			live = append(live, keyed{key: string(k), rec: r})
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("callout: load cache %s: %w", file, err)
	}
	sort.SliceStable(live, func(i, j int) bool { return live[i].rec.Stored.Before(live[j].rec.Stored) })
	for _, e := range live {
		c.lru.Add(e.key, e.rec)
	}
	if evicted := c.takeEvicted(); len(evicted) > 0 {
		c.persist(nil, evicted)
	}
	return c, nil
}

// dropped is the LRU's eviction callback (size bound, expiry, removal),
// called with the LRU's lock held: it only notes the key.
func (c *cache) dropped(key string, _ record) {
	c.evMu.Lock()
	c.evicted = append(c.evicted, key)
	c.evMu.Unlock()
}

// takeEvicted returns the keys dropped from memory since the last call
// that are still gone (a key stored again since must stay in the file).
func (c *cache) takeEvicted() []string {
	c.evMu.Lock()
	keys := c.evicted
	c.evicted = nil
	c.evMu.Unlock()
	out := keys[:0]
	for _, k := range keys {
		if !c.lru.Contains(k) {
			out = append(out, k)
		}
	}
	return out
}

// get returns the live record for key; an expired one is dropped. Reading
// does not make a record younger.
func (c *cache) get(key string, now time.Time) (record, bool) {
	r, ok := c.lru.Peek(key)
	if !ok {
		return record{}, false
	}
	if now.Before(r.Expires) {
		return r, true
	}
	c.lru.Remove(key)
	c.persist(nil, c.takeEvicted())
	return record{}, false
}

// add stores recs (newest last) in memory, the oldest beyond the bound
// evicted, and returns what the file still has to delete; persist writes
// it.
func (c *cache) add(recs ...keyed) []string {
	for _, r := range recs {
		// Stored again, the record counts as the newest.
		c.lru.Remove(r.key)
		c.lru.Add(r.key, r.rec)
	}
	return c.takeEvicted()
}

// persist mirrors a change to the file. A failed write costs only a
// probe after a restart, so it is logged, not returned.
func (c *cache) persist(recs []keyed, deleted []string) {
	if c.db == nil || len(recs) == 0 && len(deleted) == 0 {
		return
	}
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for _, k := range deleted {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, r := range recs {
			v, err := json.Marshal(r.rec)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(r.key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.logf(fmt.Sprintf("callout cache %s: write failed: %v", c.file, err))
	}
}

func (c *cache) close() error {
	if c.db == nil {
		return nil
	}
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("callout: close cache %s: %w", c.file, err)
	}
	return nil
}
