package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"mxgate/config"
	"mxgate/tracking"
)

// openTracking opens [tracking] for serve: nil (which records nothing)
// when url = "none". The SQLite file and its -wal and -shm are made mode
// 0640 and, opened by root before the privilege drop, given to the
// daemon's user.
func openTracking(ctx context.Context, cfg *config.Config, log tracking.Logger) (*tracking.Store, error) {
	if cfg.Tracking.URL == config.TrackingOff {
		return nil, nil
	}
	file := cfg.TrackingFile()
	if file != "" {
		if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
			return nil, fmt.Errorf("tracking: %w", err)
		}
	}
	s, err := tracking.Open(ctx, trackingOptions(cfg, log, false))
	if err != nil {
		return nil, err
	}
	if file == "" {
		return s, nil
	}
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		// Who wrote to whom is not for every local user; SQLite gives
		// the -wal and -shm it makes later the file's mode.
		err := os.Chmod(p, 0o640)
		if err == nil && os.Geteuid() == 0 && cfg.UID > 0 {
			err = os.Lchown(p, cfg.UID, cfg.GID)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.Close()
			return nil, fmt.Errorf("tracking: giving %s to user %s: %w", p, cfg.User, err)
		}
	}
	return s, nil
}

func trackingOptions(cfg *config.Config, log tracking.Logger, readOnly bool) tracking.Options {
	return tracking.Options{
		URL:       cfg.Tracking.URL,
		Retention: time.Duration(cfg.Tracking.Retention),
		Node:      cfg.Hostname,
		Log:       log,
		Queue:     cfg.Tracking.Queue,
		ReadOnly:  readOnly,
	}
}
