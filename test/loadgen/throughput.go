package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// counterPoll is how often the sink's counter file is read while waiting:
// fine enough against rounds of seconds, cheap on a 2-core machine.
const counterPoll = 5 * time.Millisecond

func throughput(args []string) error {
	fs := flag.NewFlagSet("throughput", flag.ExitOnError)
	counter := fs.String("counter", "", "smtp-sink's -c output `FILE`")
	n := fs.Int("n", 0, "messages the sink must receive")
	timeout := fs.Duration("timeout", 5*time.Minute, "longest wait for the sink after the command ended")
	fs.Parse(args)
	if *counter == "" || *n <= 0 || fs.NArg() == 0 {
		usage()
	}
	base, err := sinkCount(*counter)
	if err != nil {
		return err
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	accepted := time.Since(t0)
	deadline := time.Now().Add(*timeout)
	for {
		got, err := sinkCount(*counter)
		if err != nil {
			return err
		}
		if got-base >= *n {
			fmt.Printf("throughput messages=%d accept_s=%.3f e2e_s=%.3f sink=%d\n",
				*n, accepted.Seconds(), time.Since(t0).Seconds(), got-base)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the sink has %d of %d messages %v after the command ended", *counter, got-base, *n, *timeout)
		}
		time.Sleep(counterPoll)
	}
}

// sinkCount reads the last complete "mesg=N" that smtp-sink -c wrote to
// file (it rewrites one status line, ended by CR, at every end of DATA,
// QUIT and session end). No such line yet is 0.
func sinkCount(file string) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	const tail = 512
	off := max(size-tail, 0)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	for {
		i := bytes.LastIndex(buf, []byte("mesg="))
		if i < 0 {
			return 0, nil
		}
		digits := buf[i+len("mesg="):]
		j := bytes.IndexAny(digits, "\r\n")
		if j > 0 {
			if v, err := strconv.Atoi(string(digits[:j])); err == nil {
				return v, nil
			}
		}
		// A line still being written: take the one before it.
		buf = buf[:i]
	}
}
