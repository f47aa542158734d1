package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mxgate/admin"
	"mxgate/config"
	"mxgate/digest"
	"mxgate/spool"
)

func init() {
	register("digest send", "[--to ADDR]\tsend the quarantine digests now: to every local recipient with newly quarantined messages, or to ADDR", digestSend,
		withDoc(`Each recipient in a relay domain with quarantined messages not yet reported to it gets one mail listing them (sender, subject, spam score, date), each with a release and a delete link for that recipient. The digests are committed to the spool as the daemon's are, logged "<= <> U=mxgate P=local", and delivered by this command at once (a running daemon that takes one first delivers it). Messages listed once are not listed again; data_dir/digest.state remembers them. Needs [digest] url.`),
		withFlag("--to", "ADDR", "only the digest of this recipient"),
		withExample("mxgate digest send --to bob@example.com\tsend bob his digest now"))
	register("digest link", "ID RCPT [--action release|delete] [--lifetime D]\tprint a signed link that releases (or deletes) quarantined message ID for RCPT", digestLink,
		withDoc(`For an administrator to hand one user one link, as a digest would. The link works for RCPT alone, until its lifetime ends; the page behind it asks the user to confirm. A negative lifetime makes a link that has already expired.`),
		withFlag("--action", "release|delete", "what the link does (default release)"),
		withFlag("--lifetime", "DURATION", "how long the link works (default [digest] link_lifetime)"))
}

// digestArgs takes a command's --NAME VALUE flags out of args, wherever
// they are, and returns the rest.
func digestArgs(args []string, flags map[string]*string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(args[i], "=")
		p, ok := flags[name]
		if !ok {
			if strings.HasPrefix(args[i], "-") {
				return nil, fmt.Errorf("unknown flag %q: %w", args[i], errUsage)
			}
			rest = append(rest, args[i])
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, fmt.Errorf("%s needs a value: %w", name, errUsage)
			}
			i++
			value = args[i]
		}
		*p = value
	}
	return rest, nil
}

// needDigest refuses a config without [digest] url.
func needDigest(cfg *config.Config) error {
	if !cfg.DigestEnabled() {
		return fmt.Errorf("[digest] url is not set in %s: digests and their links are off", configName(cfg.File))
	}
	return nil
}

func digestSend(e *env) error {
	var to string
	rest, err := digestArgs(e.args, map[string]*string{"--to": &to})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected argument %q: %w", rest[0], errUsage)
	}
	return withDeliveries(e, func(ctx context.Context, q *admin.Queue, cfg *config.Config, deliver func(spool.ID)) error {
		if err := needDigest(cfg); err != nil {
			return err
		}
		sent, err := sendDigests(ctx, cfg, q.Spool, q.Log, q.Bus, deliver, to)
		for _, d := range sent {
			fmt.Fprintf(e.stdout, "Digest %s sent to %s: %d %s\n", d.ID, d.Recipient, d.Messages, plural(d.Messages, "message"))
		}
		if err == nil && len(sent) == 0 {
			fmt.Fprintln(e.stdout, "No quarantined messages to report")
		}
		return err
	})
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func digestLink(e *env) error {
	action, lifetime := string(digest.Release), ""
	rest, err := digestArgs(e.args, map[string]*string{"--action": &action, "--lifetime": &lifetime})
	if err != nil {
		return err
	}
	if len(rest) != 2 {
		return fmt.Errorf("give a message ID and a recipient: %w", errUsage)
	}
	if action != string(digest.Release) && action != string(digest.Delete) {
		return fmt.Errorf("--action %q: want release or delete: %w", action, errUsage)
	}
	var life config.Duration
	if lifetime != "" {
		if err := life.UnmarshalText([]byte(lifetime)); err != nil {
			return fmt.Errorf("--lifetime: %v: %w", err, errUsage)
		}
	}
	return withQueue(e, func(q *admin.Queue, cfg *config.Config) error {
		if err := needDigest(cfg); err != nil {
			return err
		}
		if lifetime == "" {
			life = cfg.Digest.LinkLifetime
		}
		id, rcpt := spool.ID(rest[0]), rest[1]
		m, err := q.Spool.QuarantineLoad(id)
		if errors.Is(err, spool.ErrNotFound) {
			return fmt.Errorf("message %s is not in quarantine", id)
		}
		if err != nil {
			return err
		}
		i := slices.IndexFunc(m.Envelope.Pending(), func(r string) bool { return strings.EqualFold(r, rcpt) })
		if i < 0 {
			return fmt.Errorf("message %s is not in quarantine for %s", id, rcpt)
		}
		key, err := digest.MakeKey(cfg.Digest.KeyFile)
		if err != nil {
			return err
		}
		tok := digest.Token{Action: digest.Action(action), ID: id, Recipient: m.Envelope.Pending()[i], Expires: clock().Add(time.Duration(life))}
		fmt.Fprintln(e.stdout, digest.Link(cfg.Digest.URL, key, tok))
		return nil
	})
}
