// Package hints is the persistent, bounded cache of verification answers
// that the sender callout and recipient verification share (Exim's hints
// databases): records with their own lifetimes, kept in memory in a
// size-bounded LRU and mirrored to a bbolt file so that they survive a
// restart. Answers are served from memory; the file is written behind,
// in batches, so that no lookup waits for a disk sync.
package hints

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

	"mxgate/state"
)

// Record is one cached answer, stored as JSON in bbolt. Verdict is the
// user's own enumeration, 0 to Options.MaxVerdict.
type Record struct {
	Verdict int       `json:"verdict"`
	Reply   string    `json:"reply,omitempty"`
	Host    string    `json:"host,omitempty"`
	Stored  time.Time `json:"stored"`
	Expires time.Time `json:"expires"`
}

// Entry is a Record to store under Key.
type Entry struct {
	Key string
	Rec Record
}

// Options configure a Cache.
type Options struct {
	File       string        // bbolt file, created with its directory; "" = memory only
	Bucket     string        // the bbolt bucket the records live in
	Size       int           // records kept, the oldest stored evicted first
	MaxTTL     time.Duration // the longest lifetime any record gets
	MaxVerdict int           // a record read back with a verdict above it is dropped
	Log        func(string)  // failed writes (they cost only a lookup after a restart)
	// Shared is a store other gateways see too (Redis): every record
	// added is written there behind, under Prefix, and Fill reads there
	// what memory lacks. nil: this gateway's records are its own.
	Shared state.Store
	Prefix string
}

// cache keeps every live record in memory, in an LRU bounded in size
// whose entries are never refreshed by reading, so the oldest stored go
// first; the bbolt file, when configured, mirrors it. Each record expires
// at its own time; the LRU's expiry, MaxTTL, only bounds how long a dead
// one stays in memory unread. Safe for concurrent use.
type cache struct {
	o   Options
	key string // in shared; "" without a file
	lru *expirable.LRU[string, Record]
	db  *bolt.DB
	sh  *sharer // nil without Options.Shared

	evMu    sync.Mutex
	evicted []string // dropped by the LRU, still to be deleted from the file

	// The writer: Add marks keys dirty and wakes it; it writes what
	// memory holds for them then, in one transaction (one sync) for all
	// the keys marked since its last write. Writing the current state,
	// not the change, keeps the file right whatever order two Adds
	// of one key come in, and bounds the backlog by the keys, not by the
	// changes.
	dirtyMu sync.Mutex
	dirty   map[string]struct{}
	closed  bool
	wake    chan struct{} // capacity 1: a write is due
	done    chan struct{} // closed by Close: write what is left and stop
	stopped chan struct{} // closed by the writer as it ends
}

// DecodeRecord reads a record from a cache file, which a crash or another
// version may have left in any state.
func DecodeRecord(b []byte, maxVerdict int) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, err
	}
	if r.Verdict < 0 || r.Verdict > maxVerdict {
		return Record{}, fmt.Errorf("verdict %d out of range", r.Verdict)
	}
	if r.Stored.IsZero() || r.Expires.Before(r.Stored) {
		return Record{}, fmt.Errorf("stored %v, expires %v: not a lifetime", r.Stored, r.Expires)
	}
	return r, nil
}

// Cache is one user's handle on a cache. Safe for concurrent use.
type Cache struct {
	*cache
	closeOnce sync.Once
	closeErr  error
}

// shared are the caches open with a file, by absolute path, each with the
// number of open handles: a reload builds its checks while the old ones
// still serve, and bbolt's file lock lets one process open a file only
// once, so both generations share the cache (answers stay valid across a
// reload anyway). The first Open's Size, MaxTTL and Shared hold until the last
// handle closes.
var shared = struct {
	sync.Mutex
	m map[string]*sharedCache
}{m: map[string]*sharedCache{}}

type sharedCache struct {
	c    *cache
	refs int
}

// Open opens (creating) the cache of o and loads the file's unexpired
// records, dropping dead and unreadable ones. A file already open in
// this process is shared, not opened again; each handle is closed on its
// own and the file with the last.
func Open(o Options) (*Cache, error) {
	if o.File == "" {
		c, err := open(o)
		if err != nil {
			return nil, err
		}
		return &Cache{cache: c}, nil
	}
	abs, err := filepath.Abs(o.File)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", o.File, err)
	}
	shared.Lock()
	defer shared.Unlock()
	if sc, ok := shared.m[abs]; ok {
		sc.refs++
		return &Cache{cache: sc.c}, nil
	}
	c, err := open(o)
	if err != nil {
		return nil, err
	}
	c.key = abs
	shared.m[abs] = &sharedCache{c: c, refs: 1}
	return &Cache{cache: c}, nil
}

// Close drops this handle; the last one of a file writes what is still to
// be written and closes the file. A second Close does nothing.
func (h *Cache) Close() error {
	h.closeOnce.Do(func() {
		if h.key != "" {
			shared.Lock()
			sc := shared.m[h.key]
			sc.refs--
			last := sc.refs == 0
			if last {
				delete(shared.m, h.key)
			}
			shared.Unlock()
			if !last {
				return
			}
		}
		h.closeErr = h.cache.close()
	})
	return h.closeErr
}

func open(o Options) (*cache, error) {
	if o.Log == nil {
		o.Log = func(string) {}
	}
	c := &cache{o: o}
	c.lru = expirable.NewLRU[string, Record](o.Size, c.dropped, o.MaxTTL)
	if o.Shared != nil {
		c.startSharer()
	}
	if o.File == "" {
		return c, nil
	}
	if err := os.MkdirAll(filepath.Dir(o.File), 0o750); err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	// The timeout turns a second daemon on the same file into an error
	// instead of a hang on bbolt's file lock.
	db, err := bolt.Open(o.File, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", o.File, err)
	}
	c.db = db
	now := time.Now()
	var live []Entry
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(o.Bucket))
		if err != nil {
			return err
		}
		var dead [][]byte
		err = b.ForEach(func(k, v []byte) error {
			r, err := DecodeRecord(v, o.MaxVerdict)
			if err != nil || !now.Before(r.Expires) {
				dead = append(dead, append([]byte(nil), k...))
				return nil
			}
			live = append(live, Entry{Key: string(k), Rec: r})
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
		return nil, fmt.Errorf("load cache %s: %w", o.File, err)
	}
	sort.SliceStable(live, func(i, j int) bool { return live[i].Rec.Stored.Before(live[j].Rec.Stored) })
	for _, e := range live {
		c.lru.Add(e.Key, e.Rec)
	}
	c.dirty = make(map[string]struct{})
	c.wake = make(chan struct{}, 1)
	c.done = make(chan struct{})
	c.stopped = make(chan struct{})
	go c.writer()
	if evicted := c.takeEvicted(); len(evicted) > 0 {
		c.persist(nil, evicted)
	}
	return c, nil
}

// dropped is the LRU's eviction callback (size bound, expiry, removal),
// called with the LRU's lock held: it only notes the key.
func (c *cache) dropped(key string, _ Record) {
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

// Get returns the live record for key; an expired one is dropped. Reading
// does not make a record younger.
func (c *cache) Get(key string, now time.Time) (Record, bool) {
	r, ok := c.lru.Peek(key)
	if !ok {
		return Record{}, false
	}
	if now.Before(r.Expires) {
		return r, true
	}
	c.lru.Remove(key)
	c.persist(nil, c.takeEvicted())
	return Record{}, false
}

// Add stores entries (newest last) in memory, the oldest beyond the bound
// evicted, and marks the change for the file's writer. It never waits for
// the disk, so a caller may order it under its own lock.
func (c *cache) Add(entries ...Entry) {
	for _, e := range entries {
		// Stored again, the record counts as the newest.
		c.lru.Remove(e.Key)
		c.lru.Add(e.Key, e.Rec)
	}
	c.persist(entries, c.takeEvicted())
	c.share(entries)
}

// persist mirrors a change to the file, behind: it marks the keys for
// the writer and returns at once. A failed write costs only a lookup
// after a restart, so it is logged, not returned.
func (c *cache) persist(entries []Entry, deleted []string) {
	if c.db == nil || len(entries) == 0 && len(deleted) == 0 {
		return
	}
	c.dirtyMu.Lock()
	if c.closed {
		c.dirtyMu.Unlock()
		return
	}
	for _, e := range entries {
		c.dirty[e.Key] = struct{}{}
	}
	for _, k := range deleted {
		c.dirty[k] = struct{}{}
	}
	c.dirtyMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a write is already due; it will see these keys
	}
}

// gather is how long the writer lets changes gather after the first:
// a burst of lookups costs one sync, not one each, and a crash loses at
// most this much (a lookup each after the restart).
const gather = 100 * time.Millisecond

// writer writes the dirty keys a little after it is woken, and once
// more when the cache closes.
func (c *cache) writer() {
	defer close(c.stopped)
	t := time.NewTimer(gather)
	t.Stop()
	for {
		select {
		case <-c.wake:
			t.Reset(gather)
			select {
			case <-t.C:
				c.write()
				continue
			case <-c.done:
			}
		case <-c.done:
		}
		c.write()
		return
	}
}

// write stores what memory holds for every dirty key, deleting the keys
// it no longer has, in one transaction.
func (c *cache) write() {
	c.dirtyMu.Lock()
	keys := c.dirty
	c.dirty = make(map[string]struct{})
	c.dirtyMu.Unlock()
	if len(keys) == 0 {
		return
	}
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(c.o.Bucket))
		for k := range keys {
			r, ok := c.lru.Peek(k)
			if !ok {
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
				continue
			}
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.o.Log(fmt.Sprintf("%s cache %s: write failed: %v", c.o.Bucket, c.o.File, err))
	}
}

// close writes what is still to be written and closes the file.
func (c *cache) close() error {
	c.stopSharer()
	if c.db == nil {
		return nil
	}
	c.dirtyMu.Lock()
	already := c.closed
	c.closed = true
	c.dirtyMu.Unlock()
	if already {
		return nil
	}
	close(c.done)
	<-c.stopped
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("close cache %s: %w", c.o.File, err)
	}
	return nil
}
