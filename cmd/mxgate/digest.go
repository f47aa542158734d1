package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"mxgate/admin"
	"mxgate/config"
	"mxgate/digest"
	"mxgate/event"
	"mxgate/mainlog"
	"mxgate/queue"
	"mxgate/spool"
)

// digestStatePath is where the daemon and `mxgate digest send` record
// which messages each recipient has been told about.
func digestStatePath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "digest.state") }

// digestSender is a digest.Sender of cfg on sp, with the key read now
// (made when missing, as the user the caller runs as).
func digestSender(cfg *config.Config, sp *spool.Spool, log *mainlog.Logger, bus *event.Bus) (*digest.Sender, error) {
	key, err := digest.MakeKey(cfg.Digest.KeyFile)
	if err != nil {
		return nil, err
	}
	return &digest.Sender{
		Options: digest.Options{
			URL: cfg.Digest.URL, From: cfg.Digest.From, Hostname: cfg.Hostname, Domains: cfg.Relay.Domains,
			Key: key, Lifetime: time.Duration(cfg.Digest.LinkLifetime),
		},
		Spool: sp, Log: log, Bus: bus, State: digestStatePath(cfg),
	}, nil
}

// startDigest is serve's part of the digest once it runs as its user:
// the key made at first start (so the daemon's user owns it) and the
// schedule's goroutine until ctx ends. Nothing when [digest] url is
// unset. A [digest] change takes a restart.
func startDigest(ctx context.Context, cfg *config.Config, sp *spool.Spool, log *mainlog.Logger, runner *queue.Runner, bus *event.Bus) error {
	if !cfg.DigestEnabled() {
		return nil
	}
	if _, err := digest.MakeKey(cfg.Digest.KeyFile); err != nil {
		return err
	}
	go digest.Run(ctx, cfg.Digest.Schedule, cfg.Digest.AtTime, func(ctx context.Context) {
		// The schedule has no one else to tell of a failure.
		if _, err := sendDigests(ctx, cfg, sp, log, bus, runner.Enqueue, ""); err != nil {
			log.Panic(fmt.Sprintf("quarantine digest: %v", err))
		}
	})
	return nil
}

// digestLinks is the link page the admin listener serves at /q/, nil
// (a 404 there) when [digest] url is unset. It reads the key at each
// request.
func digestLinks(cfg *config.Config, sp *spool.Spool, log *mainlog.Logger, runner *queue.Runner, bus *event.Bus) http.Handler {
	if !cfg.DigestEnabled() {
		return nil
	}
	return digest.Handler(digest.HandlerOptions{
		KeyFile: cfg.Digest.KeyFile,
		Queue:   &admin.Queue{Spool: sp, Log: log, User: "digest link", Hostname: cfg.Hostname, Now: clock, Bus: bus},
		Deliver: runner.Enqueue,
		Log:     log.Panic,
		Timeout: time.Duration(cfg.SMTP.CommandTimeout),
	})
}

// sendDigests sends the digests now (to one recipient when to is not
// "") and hands each to deliver.
func sendDigests(ctx context.Context, cfg *config.Config, sp *spool.Spool, log *mainlog.Logger, bus *event.Bus, deliver func(spool.ID), to string) ([]digest.Sent, error) {
	s, err := digestSender(cfg, sp, log, bus)
	if err != nil {
		return nil, err
	}
	sent, err := s.Send(ctx, to)
	for _, d := range sent {
		deliver(d.ID)
	}
	return sent, err
}
