package spool

import (
	"os"
	"strings"
	"sync"
	"time"
)

// ID is a message id in Exim's classic 16-character form
// "TTTTTT-PPPPPP-SS" (base62): arrival second, a per-process field, and the
// sub-second in 1/2000 s units. Debian 12's eximstats and exigrep parse
// only this form.
type ID string

const (
	idLen    = 16
	base62   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	ticksSec = 2000 // sub-second resolution: usec/500
	seqBits  = 13
	seqLimit = 1 << seqBits
	// pidMask keeps pid<<seqBits|seq below 62^6: Linux pids stay under
	// 2^22 (PID_MAX_LIMIT), so masking changes nothing in practice.
	pidMask = 1<<22 - 1
)

// ValidID reports whether s is a message id:
// ^[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}$. Every path the spool
// builds from an id is checked with it, so "../" can never reach the
// filesystem.
func ValidID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if i == 6 || i == 13 {
			if c != '-' {
				return false
			}
			continue
		}
		if digit62(c) < 0 {
			return false
		}
	}
	return true
}

func digit62(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 36
	}
	return -1
}

// Compare orders ids by arrival time: second, then sub-second, then the
// per-process field, the order Exim's -bp lists them in. It returns -1, 0
// or +1. The ids one IDGenerator hands out are strictly increasing in it.
func (id ID) Compare(other ID) int {
	if !ValidID(string(id)) || !ValidID(string(other)) {
		return strings.Compare(string(id), string(other))
	}
	for _, r := range [][2]int{{0, 6}, {14, 16}, {7, 13}} {
		if c := strings.Compare(string(id[r[0]:r[1]]), string(other[r[0]:r[1]])); c != 0 {
			return c
		}
	}
	return 0
}

// IDGenerator hands out message ids. The per-process field is the pid
// shifted left 13 bits plus a sequence number of ids made in the same
// 1/2000 s tick, so one process makes up to 8192 ids per tick; when a tick
// is used up Next waits for the next one. All generators of a process
// share one clock state, so two of them never produce the same id.
type IDGenerator struct {
	g *generator
}

// processGen is shared by every IDGenerator of the process: ids are unique
// per (tick, pid, seq), and the pid is the same for all of them.
var (
	processGenOnce sync.Once
	processGen     *generator
)

// NewIDGenerator returns a generator of ids unique across goroutines and
// restarts, in time order.
func NewIDGenerator() *IDGenerator {
	processGenOnce.Do(func() {
		processGen = newGenerator(os.Getpid(), time.Now, time.Sleep)
	})
	return &IDGenerator{g: processGen}
}

// Next returns a new id.
func (g *IDGenerator) Next() ID { return g.g.next() }

type generator struct {
	mu    sync.Mutex
	pid   int64
	now   func() time.Time
	sleep func(time.Duration)
	// base is the first clock reading: ticks are base's wall time plus the
	// monotonic time elapsed since, so a clock stepped back cannot make
	// ids repeat inside one process.
	base time.Time
	last int64 // tick of the last id (or of creation)
	seq  int64 // ids made in tick last, minus one

	// folded holds the lower-cased ids made in second foldedSec. exigrep
	// matches ids without regard to case, and base62 ids of one second
	// can differ only in case ("...-LA", "...-La"): such an id is skipped,
	// so `exigrep ID` never shows a stranger's message.
	folded    map[[idLen]byte]struct{}
	foldedSec int64
}

func newGenerator(pid int, now func() time.Time, sleep func(time.Duration)) *generator {
	g := &generator{pid: int64(pid) & pidMask, now: now, sleep: sleep, base: now()}
	// A previous process with the same pid may have made ids in the tick
	// this one starts in; mark it used up so the first id waits for the
	// clock to move on, as Exim's exim_wait_tick does.
	g.last = g.tick()
	g.seq = seqLimit - 1
	return g
}

// tick returns the current time in 1/2000 s units since the epoch.
func (g *generator) tick() int64 {
	t := g.base.Add(g.now().Sub(g.base))
	return t.Unix()*ticksSec + int64(t.Nanosecond())/(1e9/ticksSec)
}

func (g *generator) next() ID {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		id := g.step()
		if sec := g.last / ticksSec; sec != g.foldedSec || g.folded == nil {
			g.folded, g.foldedSec = make(map[[idLen]byte]struct{}), sec
		}
		f := foldID(id)
		if _, taken := g.folded[f]; !taken {
			g.folded[f] = struct{}{}
			return id
		}
	}
}

// foldID is id in lower case, as a fixed-size key: no allocation per id.
func foldID(id ID) [idLen]byte {
	var f [idLen]byte
	for i := range f {
		c := id[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		f[i] = c
	}
	return f
}

// step makes the next id in (tick, seq) order, waiting for the clock when
// a tick is used up.
func (g *generator) step() ID {
	for {
		t := g.tick()
		if t > g.last {
			g.last, g.seq = t, 0
			break
		}
		if g.seq+1 < seqLimit {
			g.seq++
			break
		}
		// Every id of this tick is taken: sleep to the start of the next.
		nextTick := (g.last + 1) * (1e9 / ticksSec)
		nowNanos := g.base.Add(g.now().Sub(g.base)).UnixNano()
		g.sleep(time.Duration(max(nextTick-nowNanos, 1)))
	}
	var b [idLen]byte
	put62(b[0:6], g.last/ticksSec)
	b[6] = '-'
	put62(b[7:13], g.pid<<seqBits|g.seq)
	b[13] = '-'
	put62(b[14:16], g.last%ticksSec)
	return ID(b[:])
}

func put62(dst []byte, v int64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}
