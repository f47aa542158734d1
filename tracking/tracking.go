// Package tracking keeps every message's life, refused attempts too, in a
// database that admins search ("why didn't I get the mail from X?") and
// that statistics are counted from: embedded SQLite by default, PostgreSQL
// when several gateways report into one place.
//
// The Store is an event.Sink: the mail path only copies an event into a
// bounded queue (a full queue drops and counts), and one writer goroutine
// turns the events into rows, a transaction per batch.
package tracking

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mxgate/event"
)

// Logger is where the store reports what goes wrong: mainlog's Logger.
type Logger interface {
	Main(id, text string)
	Panic(text string)
}

// Options configure Open; config fills the defaults and checks them.
type Options struct {
	URL       string        // "sqlite:/abs/path.db" or "postgres://..." (config has resolved paths)
	Retention time.Duration // rows older are deleted (hourly sweep); 0 keeps them
	Node      string        // this gateway's host name, stored per row (several nodes into one Postgres)
	Log       Logger        // Main/Panic: a write failure, dropped events (rate-limited lines)
	Queue     int           // events buffered before dropping; never block
	// ReadOnly opens an existing database for searching only (the CLI
	// beside a running daemon): no schema is created, no writer nor
	// sweeper runs, and events are ignored.
	ReadOnly bool
}

// ErrNotFound is Get's answer for a key no row has.
var ErrNotFound = errors.New("tracking: no such message")

// ErrClosed is Flush's answer after Close.
var ErrClosed = errors.New("tracking: store closed")

const (
	batchMax      = 1000
	batchInterval = 200 * time.Millisecond
	// dropLogEvery bounds the paniclog lines about a full queue.
	dropLogEvery = time.Minute
)

// Store is an open tracking database. A nil *Store records nothing, so a
// daemon with tracking off can still list it among the bus's sinks.
type Store struct {
	o   Options
	db  *sql.DB
	d   dialect
	ch  chan item
	w   *writer
	log Logger

	dropped atomic.Uint64
	// expired counts Expire's deletions: the writer forgets the row keys
	// it remembers when it changes, lest it add steps to a deleted row.
	expired  atomic.Uint64
	lastDrop atomic.Int64 // unix seconds of the last paniclog line about drops
	closed   atomic.Bool

	stop     chan struct{}
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

// item is one queued event, or a Flush's marker.
type item struct {
	ev    event.Event
	err   string
	flush chan error
}

// Open opens (and creates or migrates) the database at o.URL and starts
// the writer and the retention sweeper.
func Open(ctx context.Context, o Options) (*Store, error) {
	db, d, err := openDB(o.URL, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	if o.ReadOnly {
		if err := checkSchema(ctx, db, d); err != nil {
			db.Close()
			return nil, err
		}
	} else if err := migrate(ctx, db, d); err != nil {
		db.Close()
		return nil, err
	}
	if o.Queue <= 0 {
		o.Queue = 10000
	}
	s := &Store{o: o, db: db, d: d, ch: make(chan item, o.Queue), log: o.Log, stop: make(chan struct{})}
	if o.ReadOnly {
		return s, nil
	}
	s.w = newWriter(s)
	s.wg.Add(1)
	go s.run()
	if o.Retention > 0 {
		s.wg.Add(1)
		go s.sweep()
	}
	return s, nil
}

// Event queues a copy of e for the writer; it never blocks: with the queue
// full the event is dropped and counted.
func (s *Store) Event(e *event.Event) {
	switch e.Kind {
	case event.DNSLookup, event.SpoolCommit, event.Breaker:
		return
	}
	if s == nil || s.w == nil || s.closed.Load() {
		return
	}
	it := item{ev: *e}
	it.ev.Recipients = slices.Clone(e.Recipients)
	if e.Err != nil {
		it.err = e.Err.Error()
		it.ev.Err = nil
	}
	select {
	case s.ch <- it:
	default:
		s.drop(1)
	}
}

func (s *Store) drop(n int) {
	total := s.dropped.Add(uint64(n))
	now := time.Now().Unix()
	last := s.lastDrop.Load()
	if now-last < int64(dropLogEvery/time.Second) || !s.lastDrop.CompareAndSwap(last, now) {
		return
	}
	s.panicf("tracking: queue full, %d events dropped so far", total)
}

// Dropped is how many events were dropped: queue full, or a failed write.
func (s *Store) Dropped() uint64 {
	if s == nil {
		return 0
	}
	return s.dropped.Load()
}

// Flush returns once everything emitted before it is written: the rows
// of the attempts that have ended (an SMTP attempt ends with its
// acceptance, its connection's next transaction or its Disconnect).
func (s *Store) Flush(ctx context.Context) error {
	if s == nil || s.w == nil {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	done := make(chan error, 1)
	select {
	case s.ch <- item{flush: done}:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close flushes, stops the writer and the sweeper, and closes the database.
func (s *Store) Close() error {
	if s == nil {
		return nil
	}
	s.once.Do(func() {
		if s.w != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			s.closeErr = s.Flush(ctx)
			cancel()
		}
		s.closed.Store(true)
		close(s.stop)
		s.wg.Wait()
		if err := s.db.Close(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// run is the writer: it batches events into one transaction every
// batchInterval or batchMax events.
func (s *Store) run() {
	defer s.wg.Done()
	tick := time.NewTicker(batchInterval)
	defer tick.Stop()
	var batch []item
	commit := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.w.commit(batch)
		if err != nil {
			s.dropped.Add(uint64(len(batch)))
			s.panicf("tracking: write of %d events failed: %v", len(batch), err)
		}
		batch = batch[:0]
		return err
	}
	for {
		select {
		case it := <-s.ch:
			if it.flush != nil {
				it.flush <- commit()
				continue
			}
			batch = append(batch, it)
			if len(batch) >= batchMax {
				commit()
			}
		case now := <-tick.C:
			commit()
			s.w.expireState(now)
		case <-s.stop:
			for {
				select {
				case it := <-s.ch:
					if it.flush != nil {
						it.flush <- commit()
					} else {
						batch = append(batch, it)
					}
					continue
				default:
				}
				break
			}
			commit()
			return
		}
	}
}

// sweep deletes rows past the retention at start and hourly.
func (s *Store) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		n, err := s.Expire(ctx, time.Now().Add(-s.o.Retention))
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			s.panicf("tracking: retention sweep failed: %v", err)
		} else if n > 0 {
			s.mainf("tracking: %d messages older than %s expired", n, s.o.Retention)
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Store) panicf(format string, args ...any) {
	if s.log != nil {
		s.log.Panic(fmt.Sprintf(format, args...))
	}
}

func (s *Store) mainf(format string, args ...any) {
	if s.log != nil {
		s.log.Main("", fmt.Sprintf(format, args...))
	}
}
