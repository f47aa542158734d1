package dnsclient

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"slices"
	"strings"
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

// lookupHosts returns host's addresses in the hosts file at path, IPv4
// then IPv6, each once, in the file's order; none when the file does not
// name host or cannot be read (a missing file is no error, as for the
// system's resolver). host is matched against every name of a line
// (canonical name and aliases) without regard to case or a final dot.
func lookupHosts(path, host string) []netip.Addr {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return parseHosts(data, host)
}

// parseHosts is lookupHosts on the text of a hosts file: lines of an
// address and its names, separated by blanks, "#" starting a comment.
func parseHosts(data []byte, host string) []netip.Addr {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return nil
	}
	var v4, v6 []netip.Addr
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
		ip = ip.Unmap()
		for _, name := range f[1:] {
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
