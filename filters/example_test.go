package filters_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"mxgate/filters"
)

// heloList is the smallest real check: it refuses clients that greet
// with a name on a list. doc/checks.md walks through it.
type heloList struct{ names map[string]bool }

func (c *heloList) Name() string { return "helolist" }

func (c *heloList) Open(context.Context, *filters.Conn) filters.Session {
	return heloSession{c: c}
}

type heloSession struct {
	filters.Pass
	c *heloList
}

func (s heloSession) Mail(_ context.Context, tx *filters.Tx) filters.Verdict {
	if !s.c.names[strings.ToLower(tx.Helo)] {
		return filters.Verdict{}
	}
	return filters.Verdict{
		Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1},
		Text: "HELO name refused", Log: "HELO " + tx.Helo + " is on the list",
		ReasonCode: "helo-listed", Trace: []string{"helolist: " + tx.Helo + " listed"},
	}
}

type stdoutLog struct{}

func (stdoutLog) Main(id, text string) { fmt.Println("mainlog:", text) }
func (stdoutLog) Panic(text string)    { fmt.Println("paniclog:", text) }

// A check is one type with a Session; wiring it is one Step.
func Example() {
	p := filters.New(filters.Options{
		Checks: []filters.Step{{Check: &heloList{names: map[string]bool{"spammer.example": true}}}},
		Log:    stdoutLog{},
	})
	flow := p.Open(context.Background(), &filters.Conn{IP: netip.MustParseAddr("192.0.2.1"), Port: 4321})
	defer flow.Close()
	for _, helo := range []string{"mail.example", "Spammer.example"} {
		out := flow.Mail(context.Background(), &filters.Tx{Helo: helo, Sender: "a@example.org", SenderDomain: "example.org"})
		v := out.Verdict
		fmt.Printf("%s: %s %d %d.%d.%d %s (%s)\n", helo, v.Action, v.Code, v.Enhanced[0], v.Enhanced[1], v.Enhanced[2], v.Text, v.Log)
	}
	// Output:
	// mail.example: accept 0 0.0.0  ()
	// Spammer.example: reject 550 5.7.1 HELO name refused (HELO Spammer.example is on the list)
}
