package config

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
)

// checkUser looks up user and group, so that a daemon never starts to
// fail at the moment it drops its privileges, and refuses what an
// unprivileged daemon cannot do: give Maildir files to other users.
func (d *decoder) checkUser(c *Config) {
	c.UID, c.GID = -1, -1
	userKey, groupKey := keyPath{"user"}, keyPath{"group"}
	if c.User == "" {
		if c.Group != "" {
			d.failKey(groupKey, -1, "is set but user is not")
		}
		return
	}
	u, err := lookupUser(c.User)
	if err != nil {
		d.failKey(userKey, -1, "%w", err)
		return
	}
	c.UID, _ = strconv.Atoi(u.Uid)
	c.GID, _ = strconv.Atoi(u.Gid)
	if c.Group != "" {
		g, err := lookupGroup(c.Group)
		if err != nil {
			d.failKey(groupKey, -1, "%w", err)
			return
		}
		c.GID, _ = strconv.Atoi(g.Gid)
	}
	c.Groups = []int{c.GID}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.Atoi(id); err == nil && !slices.Contains(c.Groups, g) {
				c.Groups = append(c.Groups, g)
			}
		}
	}
	if c.UID == 0 {
		return
	}
	for _, s := range append([]*Downstream{&c.Downstream}, ptrs(c.Routes)...) {
		if s.MaildirOwner == "" {
			continue
		}
		key := keyPath{"downstream"}
		if s != &c.Downstream {
			key = keyPath{"route"}.index(indexOf(c.Routes, s))
		}
		d.failKey(key.child("maildir_owner"), -1,
			"is set, and the daemon runs as user %q, which cannot give files to other users: deliver to the users' mailboxes by Dovecot LMTP (lmtp+unix://) instead, or unset user", c.User)
	}
}

func indexOf(routes []Downstream, s *Downstream) int {
	for i := range routes {
		if &routes[i] == s {
			return i
		}
	}
	return -1
}

// lookupUser finds a user by name, or by numeric ID.
func lookupUser(name string) (*user.User, error) {
	return lookupNameOrID(name, "user", user.Lookup, user.LookupId)
}

// lookupGroup finds a group by name, or by numeric ID.
func lookupGroup(name string) (*user.Group, error) {
	return lookupNameOrID(name, "group", user.LookupGroup, user.LookupGroupId)
}

// lookupNameOrID finds what name names with byName, or, when name is a
// number, with byID; kind says what was looked for.
func lookupNameOrID[T any](name, kind string, byName, byID func(string) (T, error)) (T, error) {
	if v, err := byName(name); err == nil {
		return v, nil
	}
	if _, err := strconv.Atoi(name); err == nil {
		if v, err := byID(name); err == nil {
			return v, nil
		}
	}
	var none T
	return none, fmt.Errorf("no %s %q on this system", kind, name)
}
