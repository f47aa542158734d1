package main

import (
	"context"
	"fmt"
	"time"

	"mxgate/admin"
	"mxgate/checks"
	"mxgate/config"
	"mxgate/ratelimit"
	"mxgate/spool"
)

func init() {
	register("hold list", "\tlist the messages rate limits hold, per hold key (NAME:VALUE)", holdList,
		withDoc(`A [[ratelimit]] with action = "hold" accepts the mail of a key over its limit and freezes it in the queue under the hold key NAME:VALUE (the limit's name and the user, sender, domain or IP), with a paniclog alert. Each key is listed with its count of held messages, then their -bp entries.`))
	register("hold release", "KEY...\tthaw the messages held as KEY, deliver them now and clear KEY's rate", holdRelease,
		withDoc(`KEY is a hold key as listed, or its VALUE alone for every limit. The released user starts afresh: the rate counter in the state store is cleared. Logged "unfrozen by USER: hold KEY released".`))
	register("hold drop", "KEY...\tremove the messages held as KEY, without a bounce", holdDrop,
		withDoc(`KEY as for hold release. Logged "removed by USER: hold KEY dropped" and "Completed", as -Mrm logs.`))
}

func holdList(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
		return q.HoldList(e.stdout)
	})
}

// holdRelease thaws each key's messages and makes one delivery attempt
// at each now, as -M does, then clears the keys' rates in the state
// store. A store that cannot be opened (the daemon holds the embedded
// one) leaves the rate to decay by itself: the release stands.
func holdRelease(e *env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("give one or more hold keys: %w", errUsage)
	}
	return withDeliveries(e, func(ctx context.Context, q *admin.Queue, cfg *config.Config, deliver func(spool.ID)) error {
		f := failures{e: e}
		var cleared []string
		for _, key := range e.args {
			ids, keys, lines, errs := q.HoldRelease(key)
			for _, l := range lines {
				fmt.Fprintln(e.stdout, l)
			}
			for _, err := range errs {
				f.add(err)
			}
			for _, id := range ids {
				deliver(id)
			}
			for _, k := range keys {
				cleared = append(cleared, ratelimit.HoldKeys(k)...)
			}
		}
		if len(cleared) > 0 {
			if err := clearRates(ctx, cfg, cleared); err != nil {
				fmt.Fprintf(e.stderr, "mxgate: released, but the rate was not cleared (it decays by itself): %v\n", err)
			}
		}
		return f.result()
	})
}

// clearRates deletes keys from the state store.
func clearRates(ctx context.Context, cfg *config.Config, keys []string) error {
	st, err := checks.OpenStore(cfg, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return st.Delete(ctx, keys...)
}

func holdDrop(e *env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("give one or more hold keys: %w", errUsage)
	}
	return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
		f := failures{e: e}
		for _, key := range e.args {
			lines, errs := q.HoldDrop(key)
			for _, l := range lines {
				fmt.Fprintln(e.stdout, l)
			}
			for _, err := range errs {
				f.add(err)
			}
		}
		return f.result()
	})
}
