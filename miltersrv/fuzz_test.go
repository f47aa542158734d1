package miltersrv

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// packet is one milter packet: length, command, data.
func packet(cmd byte, data string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)+1))
	return append(append(b, cmd), data...)
}

// FuzzMilterWire feeds what an MTA might send (the packets go-milter's
// server side parses, then miltersrv's callbacks) to a running server:
// whatever arrives, the server answers or closes, never panics or hangs,
// and the session leaves no body file and no open check behind.
func FuzzMilterWire(f *testing.F) {
	neg := binary.BigEndian.AppendUint32(nil, 6)
	neg = binary.BigEndian.AppendUint32(neg, 0x1ff)
	neg = binary.BigEndian.AppendUint32(neg, 0x1fffff)
	var whole []byte
	for _, p := range [][]byte{
		packet('O', string(neg)),
		packet('C', "client.test\x004\x00\x00\x00192.0.2.7\x00"),
		packet('H', "client.test\x00"),
		packet('D', "Mi\x00Q1\x00"),
		packet('M', "<a@client.test>\x00"),
		packet('R', "<u@example.test>\x00"),
		packet('L', "Subject\x00 hi\x00"),
		packet('N', ""),
		packet('B', "body\r\n"),
		packet('E', ""),
		packet('Q', ""),
	} {
		whole = append(whole, p...)
	}
	f.Add(whole)
	f.Add(whole[:40])
	f.Add(packet('O', "\x00\x00"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 'B'})
	f.Add([]byte("garbage that is not a packet"))

	h := newHarness(f, nil)
	addr := h.srv.Addr().String()
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("reading the server's answers: %v (a hang ends at the deadline)", err)
		}
		c.Close()
		deadline := time.Now().Add(5 * time.Second)
		for h.check.open.Load() != 0 || bodyFiles(t, h.dir) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after the session: %d check sessions open, %d body files", h.check.open.Load(), bodyFiles(t, h.dir))
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func bodyFiles(t *testing.T, dir string) int {
	ms, err := filepath.Glob(filepath.Join(dir, "milter-*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if _, err := os.Stat(m); err == nil {
			n++
		}
	}
	return n
}
