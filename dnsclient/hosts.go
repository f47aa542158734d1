package dnsclient

import (
	"bufio"
	"bytes"
	"iter"
	"net/netip"
	"os"
	"slices"
	"strings"

	"mxgate/event"
)

// DefaultHostsFile is the hosts file LookupIP reads before it asks the
// resolvers, unless WithHostsFile names another.
const DefaultHostsFile = "/etc/hosts"

// Option changes a Client that New makes.
type Option func(*Client)

// WithHostsFile makes LookupIP read path instead of DefaultHostsFile; ""
// reads none, so every name goes to the resolvers.
func WithHostsFile(path string) Option {
	return func(c *Client) { c.hostsFile = path }
}

// WithBus makes the client emit a DNSLookup event per question it
// answers or fails (Exchange, and so Lookup and LookupIP); nil emits
// nothing.
func WithBus(b *event.Bus) Option {
	return func(c *Client) { c.bus = b }
}

// lookupHosts returns host's addresses in the hosts file at path, IPv4
// then IPv6, each once, in the file's order; none when the file does not
// name host or cannot be read (a missing file is no error, as for the
// system's resolver). host is matched against every name of a line
// (canonical name and aliases) without regard to case or a final dot.
func lookupHosts(path, host string) []netip.Addr {
	return parseHosts(readHosts(path), host)
}

// parseHosts is lookupHosts on the text of a hosts file.
func parseHosts(data []byte, host string) []netip.Addr {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return nil
	}
	var v4, v6 []netip.Addr
	for ip, names := range hostsLines(data) {
		for _, name := range names {
			if !strings.EqualFold(strings.TrimSuffix(name, "."), host) {
				continue
			}
			switch {
			case ip.Is4() && !slices.Contains(v4, ip):
				v4 = append(v4, ip)
			case ip.Is6() && !slices.Contains(v6, ip):
				v6 = append(v6, ip)
			}
			break
		}
	}
	return append(v4, v6...)
}

// HostsAddrs returns host's addresses in the hosts file at path, as
// LookupIP finds them there before it asks any resolver; none when the
// file does not name host or cannot be read, or path is "".
func HostsAddrs(path, host string) []netip.Addr { return lookupHosts(path, host) }

// HostsNames returns the names the hosts file at path gives ip, as the
// system's gethostbyaddr does with "hosts: files": the names of every
// line of ip, in the file's order, each once (lower case, without a
// final dot). None when the file does not list ip or cannot be read, or
// path is "".
func HostsNames(path string, ip netip.Addr) []string {
	return parseHostsNames(readHosts(path), ip)
}

// parseHostsNames is HostsNames on the text of a hosts file.
func parseHostsNames(data []byte, ip netip.Addr) []string {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Zone() != "" {
		return nil
	}
	var names []string
	for a, given := range hostsLines(data) {
		if a != ip {
			continue
		}
		for _, name := range given {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			if name != "" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	return names
}

// readHosts returns the text of the hosts file at path: none when path
// is "" or the file cannot be read, which is no error (a missing file is
// none for the system's resolver too).
func readHosts(path string) []byte {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return data
}

// hostsLines yields each line of a hosts file's text that names an
// address, IPv4-mapped ones unmapped, and its names. A line is an
// address and its names separated by blanks, "#" starting a comment;
// one whose address does not parse or has a zone is passed over.
func hostsLines(data []byte) iter.Seq2[netip.Addr, []string] {
	return func(yield func(netip.Addr, []string) bool) {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			ip, err := netip.ParseAddr(f[0])
			if err != nil || ip.Zone() != "" {
				continue
			}
			if !yield(ip.Unmap(), f[1:]) {
				return
			}
		}
	}
}
