package main

import (
	"fmt"

	"mxgate/admin"
	"mxgate/config"
	"mxgate/spool"
)

func init() {
	register("quarantine list", "\tlist quarantined messages: age, size, ID, sender, reason", quarantineList)
	register("quarantine show", "ID\tshow a quarantined message: its -H file, then its -D file", quarantineShow)
	register("quarantine release", "ID...\tmove messages from quarantine into the queue and deliver them now", quarantineRelease)
	register("quarantine delete", "ID...\tdelete messages from quarantine", eachMessage((*admin.Queue).QuarantineDelete))
}

func quarantineList(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
		return q.QuarantineList(e.stdout)
	})
}

func quarantineShow(e *env) error {
	if len(e.args) != 1 {
		return fmt.Errorf("give exactly one message ID: %w", errUsage)
	}
	return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
		return q.QuarantineShow(e.stdout, e.args[0])
	})
}

// quarantineRelease moves each message into the queue and makes one
// delivery attempt at it now, as -M does; a running daemon that takes it
// first delivers it instead.
func quarantineRelease(e *env) error {
	return prepareAndDeliver(e, func(q *admin.Queue, arg string) (spool.ID, error) {
		id, line, err := q.QuarantineRelease(arg)
		if err == nil {
			fmt.Fprintln(e.stdout, line)
		}
		return id, err
	})
}
