package clamd

import (
	"context"
	"errors"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/internal/peertest"
)

// startClamd runs the real clamd through scripts/peers.sh, with its EICAR
// test signature and the extra clamd.conf lines, until the test ends, and
// returns its address.
func startClamd(tb testing.TB, confLines ...string) string {
	tb.Helper()
	peertest.Require(tb, "clamav-daemon", "clamd")
	return peertest.Start(tb, "clamd", "", 0, confLines...)
}

const messages = "../../testdata/messages/"

func TestRealClamd(t *testing.T) {
	addr := startClamd(t)
	f := New(Options{Addresses: []string{addr}, OnVirus: OnVirusReject, StampClean: true})
	const found = "Virus found: Test.EICAR.NDB.UNOFFICIAL"
	for _, tc := range []struct {
		name   string
		msg    *filters.Message
		action filters.Action
		text   string
		virus  string // the fact the verdict carries
	}{
		{"EICAR in the body", textMessage("Hello,\n" + eicar + "\n"), filters.Reject, found, "Test.EICAR.NDB.UNOFFICIAL"},
		{"EICAR as a base64 MIME attachment", fileMessage(t, messages+"eicar-attachment.eml"), filters.Reject, found, "Test.EICAR.NDB.UNOFFICIAL"},
		{"clean ham", fileMessage(t, messages+"exim-basics-ham.eml"), filters.Accept, "", ""},
		{"clean plain", fileMessage(t, messages+"gateway-plain.eml"), filters.Accept, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			v, err := f.Check(ctx, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tc.action || v.Text != tc.text || v.Virus != tc.virus {
				t.Errorf("verdict %v %q virus %q, want %v %q virus %q", v.Action, v.Text, v.Virus, tc.action, tc.text, tc.virus)
			}
		})
	}
}

// TestRealClamdSizeLimit: the real clamd refuses a stream over its
// StreamMaxLength as soon as a chunk announces too much, without reading
// it; the client still reads its answer.
func TestRealClamdSizeLimit(t *testing.T) {
	addr := startClamd(t, "StreamMaxLength 1K")
	for _, chunk := range []int{chunkSize, 512} { // one 8 KiB chunk; many small ones
		f := New(testOptions(addr))
		f.chunkSize = chunk
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		v, err := f.Check(ctx, fileMessage(t, messages+"exim-basics-ham.eml"))
		cancel()
		if !errors.Is(err, ErrSizeLimit) {
			t.Errorf("chunk size %d: Check = %+v, %v; want ErrSizeLimit", chunk, v, err)
		}
	}
}

// BenchmarkRealClamdHam is clamd's own throughput as mxgate's client sees
// it, one scan after another: the figure the gateway's throughput with
// scanning is compared against.
func BenchmarkRealClamdHam(b *testing.B) {
	addr := startClamd(b)
	f := New(testOptions(addr))
	m := fileMessage(b, messages+"exim-basics-ham.eml")
	ctx := context.Background()
	for b.Loop() {
		if _, err := f.Check(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRealClamdHamParallel is the same with concurrent scans, as the
// gateway makes them.
func BenchmarkRealClamdHamParallel(b *testing.B) {
	addr := startClamd(b)
	f := New(testOptions(addr))
	m := fileMessage(b, messages+"exim-basics-ham.eml")
	ctx := context.Background()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.Check(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
