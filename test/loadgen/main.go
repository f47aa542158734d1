// Command loadgen is scripts/load.sh's measuring hand: it times what the
// shell cannot, against a gateway (mxgate or Postfix) already running on
// loopback, and prints one line of key=value results per measurement for
// the script to tabulate. It is a benchmark tool, not a test.
//
//	loadgen throughput -counter FILE -n N [-timeout D] -- COMMAND ARG...
//	    runs COMMAND (smtp-source) and times it from its start to its exit
//	    (accept) and to the moment the smtp-sink whose -c counter output
//	    is FILE has N more messages than before (end to end).
//	loadgen probe -to ADDR -sink ADDR [-latency N] [-pid PID -big BYTES] [-pid PID -idle N]
//	    serves an SMTP sink on -sink (the gateway relays to it), then, in
//	    this order: sends N messages one at a time, each after the last
//	    reached the sink, for the latency percentiles; sends one message of
//	    BYTES and records the RSS that process PID adds while it is in
//	    flight; opens N sessions (greeted and EHLO'd, then idle) and reads
//	    PID's RSS with all of them open.
//
// Exit status: 0 measured, 1 failed (the reason is on stderr), 2 usage.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "throughput":
		err = throughput(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: loadgen throughput -counter FILE -n N [-timeout D] -- COMMAND ARG...
       loadgen probe -to ADDR -sink ADDR [-latency N] [-size BYTES] [-pid PID] [-big BYTES] [-idle N] [-per-ip N]`)
	os.Exit(2)
}
