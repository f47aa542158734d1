package callout

import (
	"container/list"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

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

// cache keeps every live record in memory, oldest stored first for
// eviction; the bbolt file, when configured, mirrors it so it survives a
// restart.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*list.Element // → *keyedEntry
	order   *list.List
	db      *bolt.DB
	file    string
	logf    func(string)
}

type keyedEntry struct {
	key string
	rec record
}

func openCache(file string, max int, logf func(string)) (*cache, error) {
	c := &cache{max: max, entries: make(map[string]*list.Element), order: list.New(), file: file, logf: logf}
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
	var live []keyedEntry
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
			live = append(live, keyedEntry{key: string(k), rec: r})
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
		c.entries[e.key] = c.order.PushBack(&keyedEntry{key: e.key, rec: e.rec})
	}
	if evicted := c.evict(); len(evicted) > 0 {
		c.persist(nil, evicted)
	}
	return c, nil
}

// get returns the live record for key; an expired one is dropped.
func (c *cache) get(key string, now time.Time) (record, bool) {
	c.mu.Lock()
	el, ok := c.entries[key]
	if !ok {
		c.mu.Unlock()
		return record{}, false
	}
	e := el.Value.(*keyedEntry)
	if now.Before(e.rec.Expires) {
		c.mu.Unlock()
		return e.rec, true
	}
	c.order.Remove(el)
	delete(c.entries, key)
	c.mu.Unlock()
	c.persist(nil, []string{key})
	return record{}, false
}

// put stores recs (newest last) and evicts the oldest beyond the bound.
func (c *cache) put(now time.Time, recs ...keyed) {
	if len(recs) == 0 {
		return
	}
	c.mu.Lock()
	for _, r := range recs {
		if el, ok := c.entries[r.key]; ok {
			c.order.Remove(el)
		}
		c.entries[r.key] = c.order.PushBack(&keyedEntry{key: r.key, rec: r.rec})
	}
	evicted := c.evict()
	c.mu.Unlock()
	c.persist(recs, evicted)
}

// evict drops the oldest records beyond the bound; called with c.mu held.
func (c *cache) evict() []string {
	var out []string
	for c.order.Len() > c.max {
		e := c.order.Remove(c.order.Front()).(*keyedEntry)
		delete(c.entries, e.key)
		out = append(out, e.key)
	}
	return out
}

// persist mirrors a change to the file. A failed write costs only a
// probe after a restart, so it is logged, not returned.
func (c *cache) persist(recs []keyed, deleted []string) {
	if c.db == nil {
		return
	}
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for _, r := range recs {
			v, err := json.Marshal(r.rec)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(r.key), v); err != nil {
				return err
			}
		}
		for _, k := range deleted {
			if err := b.Delete([]byte(k)); err != nil {
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
