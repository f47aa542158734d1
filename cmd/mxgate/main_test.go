package main

import (
	"errors"
	"flag"
	"slices"
	"testing"
)

func TestParseCommandLine(t *testing.T) {
	tests := []struct {
		argv       []string
		name, conf string
		args       []string
		err        error
	}{
		{argv: []string{"mxgate", "serve"}, name: "serve"},
		{argv: []string{"mxgate", "-config", "a.toml", "serve"}, name: "serve", conf: "a.toml"},
		{argv: []string{"mxgate", "serve", "--config=b.toml"}, name: "serve", conf: "b.toml"},
		{argv: []string{"mxgate", "config", "check", "-config", "c.toml"}, name: "config check", conf: "c.toml"},
		{argv: []string{"mxgate", "-Mf", "1xWDX2-0Eipyi-Hh", "-config", "d"}, name: "-Mf", conf: "d", args: []string{"1xWDX2-0Eipyi-Hh"}},
		{argv: []string{"/usr/bin/mailq"}, name: "-bp"},
		{argv: []string{"mailq", "-bpc"}, name: "-bpc"},
		{argv: []string{"/usr/sbin/runq"}, name: "-q"},
		{argv: []string{"/usr/sbin/sendmail", "-i", "u@example.test"}, name: "-bm", args: []string{"-i", "u@example.test"}},
		{argv: []string{"sendmail", "-t"}, name: "-t"},
		{argv: []string{"sendmail", "-bp"}, name: "-bp"},
		{argv: []string{"sendmail"}, name: "-bm"},
		{argv: []string{"mxgate"}, err: errUsage},
		{argv: []string{"mxgate", "-config"}, err: errUsage},
		{argv: []string{"mxgate", "frobnicate"}, err: errUsage},
		{argv: []string{"mxgate", "config", "frob"}, err: errUsage},
		{argv: []string{"mxgate", "-h"}, err: flag.ErrHelp},
	}
	for _, tt := range tests {
		cl, err := parseCommandLine(tt.argv)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%q: error %v, want %v", tt.argv, err, tt.err)
			}
			continue
		}
		if err != nil || cl.name != tt.name || cl.configPath != tt.conf || !slices.Equal(cl.args, tt.args) && len(cl.args)+len(tt.args) > 0 {
			t.Errorf("%q = %+v, %v; want name %q config %q args %q", tt.argv, cl, err, tt.name, tt.conf, tt.args)
		}
	}
}
