package adminweb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// Probe is one part of readiness: Check returns nil when Name works.
type Probe struct {
	Name  string
	Check func(ctx context.Context) error
}

// Probes is a Ready func that runs every probe at once and names each
// that failed, one a line, in the order given.
func Probes(probes ...Probe) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		errs := make([]error, len(probes))
		var wg sync.WaitGroup
		for i, p := range probes {
			wg.Go(func() {
				if err := p.Check(ctx); err != nil {
					errs[i] = fmt.Errorf("%s: %w", p.Name, err)
				}
			})
		}
		wg.Wait()
		return errors.Join(slices.DeleteFunc(errs, func(e error) bool { return e == nil })...)
	}
}

// Writable is a probe of a directory the gateway must write (the spool):
// it creates a file there and removes it, which fails on a read-only or
// full filesystem and for a user without the right, root included.
func Writable(dir string) func(ctx context.Context) error {
	return func(context.Context) error {
		f, err := os.CreateTemp(dir, ".readyz-"+strconv.Itoa(os.Getpid())+"-*")
		if err != nil {
			return err
		}
		name := f.Name()
		err = f.Close()
		if rerr := os.Remove(name); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(name), err)
		}
		return nil
	}
}

// AnyOf is a probe that passes when one of addrs answers ping: a scanner
// with several addresses is reachable while one of them is, as the
// scanner client tries the next when one fails.
func AnyOf(addrs []string, ping func(ctx context.Context, addr string) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var errs error
		for _, a := range addrs {
			err := ping(ctx, a)
			if err == nil {
				return nil
			}
			if errs == nil {
				errs = err
			} else {
				// One line: /readyz names a failed part a line.
				errs = fmt.Errorf("%w; %w", errs, err)
			}
		}
		return errs
	}
}
