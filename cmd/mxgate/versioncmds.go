package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time by the packaging script:
// go build -ldflags "-X main.version=1.2.3". Empty: the module's version
// from the build info, else "devel".
var version string

// commit is set at link time with the version (-X main.commit=REV), for
// builds without Go's VCS stamp (-buildvcs=false); the stamp wins.
var commit string

func init() {
	register("version", "\tprint the version, the commit it was built from and the Go version", printVersion,
		withDoc(`The first line is "mxgate VERSION", the same in every build of that
version; scripts may parse it. Then the commit ("-dirty" when the tree had
uncommitted changes) and the Go toolchain.`),
		withExample("mxgate version\tmxgate 1.2.0 / commit 3de13e7... / go1.24.1 linux/amd64"))
	register("--version", "\tsame as version", printVersion, hidden)
	register("-bV", "\tprint the version as Exim does, then check the config as config check does", eximVersion,
		withDoc(`Exim's -bV: "mxgate version VERSION #COMMIT built with GO", the
configuration file read, then what config check prints (exit status 1 and
the error when the config is invalid).`))
}

// buildInfo is what the binary knows about its own build.
type buildInfo struct {
	version, commit, goVersion string
}

func readBuildInfo() buildInfo {
	b := buildInfo{version: version, commit: commit, goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if ok {
		if b.version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.version = info.Main.Version
		}
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			b.commit = rev + dirty
		}
	}
	if b.version == "" {
		b.version = "devel"
	}
	if b.commit == "" {
		b.commit = "unknown"
	}
	return b
}

func printVersion(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	b := readBuildInfo()
	fmt.Fprintf(e.stdout, "mxgate %s\ncommit %s\n%s\n", b.version, b.commit, b.goVersion)
	return nil
}

func eximVersion(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	b := readBuildInfo()
	fmt.Fprintf(e.stdout, "mxgate version %s #%s built with %s\n", b.version, b.commit, b.goVersion)
	fmt.Fprintf(e.stdout, "Configuration file is %s\n", configName(e.configPath))
	return configCheck(e)
}
