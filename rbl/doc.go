// Package rbl owns DNS blocklist lookups: DNSBL, DNSWL and RHSBL zones
// queried in parallel on miekg/dns (RFC 5782 query names), return-code
// matching, weighted scores, and the TTL-respecting cache and single flight
// shared by every SMTP session.
package rbl
