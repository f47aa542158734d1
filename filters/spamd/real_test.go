package spamd

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/internal/peertest"
	"mxgate/spool"
)

// startSpamd runs Debian's spamd through scripts/peers.sh (offline config:
// no Bayes, no network tests) until the test ends and returns its address.
func startSpamd(tb testing.TB) string {
	tb.Helper()
	peertest.Require(tb, "spamassassin, spamd, spamc", "spamd", "spamc")
	return peertest.Start(tb, "spamd", "", 0)
}

// spamLog is the mainlog fact for pharmacy-spam.eml.
const spamLog = "spamd score=12.1 required=5.0 tests=DRUGS_ERECTILE,DRUG_ED_ONLINE,LONGWORDS,NO_RECEIVED," +
	"NO_RELAYS,ONLINE_PHARMACY,SUBJECT_DRUG_GAP_C,SUBJECT_DRUG_GAP_L,TVD_VISIT_PHARMA"

func TestRealSpamd(t *testing.T) {
	addr := startSpamd(t)
	tests := []struct {
		file string
		opt  Options
		want filters.Verdict
	}{
		{
			file: "pharmacy-spam.eml", opt: Options{RejectScore: 15},
			want: filters.Verdict{Action: filters.Accept, Score: 12.1, Scored: true,
				Log:     spamLog,
				Headers: hs("X-Spam-Status: Yes, score=12.1", "X-Spam-Score: 121", "X-Spam-Bar: ++++++++++++", "X-Spam-Flag: YES")},
		},
		{
			file: "pharmacy-spam.eml", opt: Options{RejectScore: 12},
			want: filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1},
				ReasonCode: "spam-score", Score: 12.1, Scored: true,
				Text:    "Message scored 12.1 spam points (threshold 12.0); rejected as spam",
				Reason:  "spam score 12.1 >= reject 12.0",
				Log:     spamLog,
				Headers: hs("X-Spam-Status: Yes, score=12.1", "X-Spam-Score: 121", "X-Spam-Bar: ++++++++++++", "X-Spam-Flag: YES")},
		},
		{
			file: "exim-basics-ham.eml", opt: Options{RejectScore: 15},
			want: filters.Verdict{Action: filters.Accept, Scored: true, Log: "spamd score=0.0 required=5.0 tests=NO_RECEIVED,NO_RELAYS",
				Headers: hs("X-Spam-Status: No, score=0.0", "X-Spam-Score: 0", "X-Spam-Bar: /")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tt.opt.Addresses, tt.opt.MaxSize = []string{addr}, 512000
			tt.opt.User = "nobody"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got, err := New(tt.opt).Check(ctx, loadMessage(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !equalVerdict(got, tt.want) {
				t.Errorf("verdict\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}

	t.Run("report", func(t *testing.T) {
		got, err := New(Options{Addresses: []string{addr}, MaxSize: 512000, RejectScore: 15, Report: true}).Check(context.Background(), loadMessage(t, "pharmacy-spam.eml"))
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(got.Headers, func(h spool.Header) bool { return strings.HasPrefix(h.Text, "X-Spam-Report: ") })
		if i < 0 {
			t.Fatalf("no X-Spam-Report in %q", got.Headers)
		}
		rep := got.Headers[i].Text
		for _, want := range []string{
			"X-Spam-Report: Spam detection software, running on the system ",
			"\n Content analysis details:   (12.1 points, 5.0 required)\n",
			"\n  2.4 ONLINE_PHARMACY        BODY: Online Pharmacy\n",
		} {
			if !strings.Contains(rep, want) {
				t.Errorf("X-Spam-Report lacks %q:\n%s", want, rep)
			}
		}
	})

	// Through the chain with on_error=accept, with the real spamd as the
	// second address behind a dead one.
	t.Run("chain with failover", func(t *testing.T) {
		f := New(testOptions(refusedAddr(t), addr))
		c := filters.NewChain([]filters.Entry{{Filter: f, Timeout: time.Minute, OnError: filters.OnErrorAccept}}, nil)
		res := c.Run(context.Background(), loadMessage(t, "pharmacy-spam.eml"))[0]
		if res.Err != nil || res.Verdict.Action != filters.Accept ||
			!slices.Equal(res.Verdict.Headers, hs("X-Spam-Status: Yes, score=12.1", "X-Spam-Score: 121", "X-Spam-Bar: ++++++++++++", "X-Spam-Flag: YES")) {
			t.Errorf("got %+v, err %v", res.Verdict, res.Err)
		}
	})
}

// BenchmarkRealSpamd measures spamd's own throughput through this client,
// with as many concurrent requests as spamd has children (2): the figure
// the gateway's throughput with spamd on is compared against.
func BenchmarkRealSpamd(b *testing.B) {
	addr := startSpamd(b)
	f := New(testOptions(addr))
	msgs := []*filters.Message{loadMessage(b, "pharmacy-spam.eml"), loadMessage(b, "exim-basics-ham.eml")}
	b.SetParallelism(1) // GOMAXPROCS goroutines; spamd's two children are the limit
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := f.Check(context.Background(), msgs[i%len(msgs)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
