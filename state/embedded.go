package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucket holds the embedded store's records in its bbolt file.
var bucket = []byte("state")

// flushEvery bounds how long a change waits in memory before the writer
// puts it in the file: a crash loses at most this much of the counters.
const flushEvery = time.Second

type entry struct {
	val     []byte
	expires time.Time // zero: never
}

func (e entry) live(now time.Time) bool { return e.expires.IsZero() || now.Before(e.expires) }

// embedded is the single-gateway Store: a map under one mutex (every call
// is a few map operations, so the atomic operations are atomic for free),
// written behind to bbolt so that counters and caches survive a restart.
type embedded struct {
	mu    sync.Mutex
	m     map[string]entry
	dirty map[string]struct{} // changed since the last write; absent from m: deleted

	db      *bolt.DB // nil: memory only
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
	err     error
}

func openEmbedded(file string) (*embedded, error) {
	s := &embedded{m: map[string]entry{}, dirty: map[string]struct{}{}}
	if file == "" {
		return s, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	db, err := bolt.Open(file, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", file, err)
	}
	now := time.Now()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		var dead [][]byte
		err = b.ForEach(func(k, v []byte) error {
			e, ok := decodeEntry(v)
			if !ok || !e.live(now) {
				dead = append(dead, append([]byte(nil), k...))
				return nil
			}
			s.m[string(k)] = e
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
		return nil, fmt.Errorf("state: load %s: %w", file, err)
	}
	s.db = db
	s.done = make(chan struct{})
	s.stopped = make(chan struct{})
	go s.writer()
	return s, nil
}

// A record in the file: the expiry in Unix nanoseconds (0: never), then
// the value.
func encodeEntry(e entry) []byte {
	b := make([]byte, 8, 8+len(e.val))
	if !e.expires.IsZero() {
		binary.BigEndian.PutUint64(b, uint64(e.expires.UnixNano()))
	}
	return append(b, e.val...)
}

func decodeEntry(b []byte) (entry, bool) {
	if len(b) < 8 {
		return entry{}, false
	}
	e := entry{val: append([]byte(nil), b[8:]...)}
	if ns := binary.BigEndian.Uint64(b); ns != 0 {
		e.expires = time.Unix(0, int64(ns))
	}
	return e, true
}

func (s *embedded) writer() {
	defer close(s.stopped)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.flush()
		case <-s.done:
			s.flush()
			return
		}
	}
}

// flush writes what memory holds now for the keys changed since the last
// flush, and drops the expired records, in one transaction. A failed
// write keeps the keys dirty for the next one.
func (s *embedded) flush() {
	now := time.Now()
	s.mu.Lock()
	for k, e := range s.m {
		if !e.live(now) {
			delete(s.m, k)
			s.dirty[k] = struct{}{}
		}
	}
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return
	}
	put := make(map[string][]byte, len(s.dirty))
	for k := range s.dirty {
		if e, ok := s.m[k]; ok {
			put[k] = encodeEntry(e)
		} else {
			put[k] = nil
		}
	}
	s.dirty = map[string]struct{}{}
	s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for k, v := range put {
			var err error
			if v == nil {
				err = b.Delete([]byte(k))
			} else {
				err = b.Put([]byte(k), v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.mu.Lock()
		for k := range put {
			s.dirty[k] = struct{}{}
		}
		s.err = fmt.Errorf("state: write %s: %w", s.db.Path(), err)
		s.mu.Unlock()
	}
}

// get returns the live entry at key, dropping a dead one. s.mu is held.
func (s *embedded) get(key string, now time.Time) (entry, bool) {
	e, ok := s.m[key]
	if ok && !e.live(now) {
		delete(s.m, key)
		s.dirty[key] = struct{}{}
		return entry{}, false
	}
	return e, ok
}

// put stores e at key. s.mu is held.
func (s *embedded) put(key string, e entry) {
	s.m[key] = e
	s.dirty[key] = struct{}{}
}

func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

func (s *embedded) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get(key, time.Now())
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), e.val...), true, nil
}

func (s *embedded) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(key, entry{val: append([]byte(nil), val...), expires: expiry(now, ttl)})
	return nil
}

func (s *embedded) Delete(_ context.Context, keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if _, ok := s.m[k]; ok {
			delete(s.m, k)
			s.dirty[k] = struct{}{}
		}
	}
	return nil
}

func (s *embedded) Keys(_ context.Context, prefix string) ([]string, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k, e := range s.m {
		if strings.HasPrefix(k, prefix) && e.live(now) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// Incr keeps the counter as decimal text, as Redis does, so that Get
// reads the same bytes from both backends.
func (s *embedded) Incr(_ context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get(key, now)
	var v int64
	if ok {
		var err error
		if v, err = strconv.ParseInt(string(e.val), 10, 64); err != nil {
			return 0, fmt.Errorf("state: incr %q: value %q is not an integer", key, e.val)
		}
	}
	v += n
	// As Redis's EXPIRE NX: a ttl is given to a key without one.
	if e.expires.IsZero() {
		e.expires = expiry(now, ttl)
	}
	e.val = []byte(strconv.FormatInt(v, 10))
	s.put(key, e)
	return v, nil
}

// Rate computes on r.Now, the caller's clock, but the record expires by
// the wall clock, as Redis's PX does.
func (s *embedded) Rate(_ context.Context, key string, r RateOptions) (float64, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var prev float64
	var prevTime time.Time
	if e, ok := s.get(key, now); ok {
		var err error
		if prev, prevTime, err = decodeRate(e.val); err != nil {
			return 0, fmt.Errorf("state: rate %q: %w", key, err)
		}
	}
	rate, store := NextRate(prev, prevTime, r)
	if store {
		s.put(key, entry{val: encodeRate(rate, r.Now), expires: now.Add(rateTTL(r.Period))})
	}
	return rate, nil
}

// Close writes what is left to the file and closes it.
func (s *embedded) Close() error {
	s.once.Do(func() {
		if s.db == nil {
			return
		}
		close(s.done)
		<-s.stopped
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if cerr := s.db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("state: close %s: %w", s.db.Path(), cerr)
		}
		s.err = err
	})
	return s.err
}
