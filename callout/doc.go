// Package callout owns sender callout verification (Exim's
// verify = sender/callout): probing the sender domain's MX hosts with
// RCPT TO:<sender> politely — one probe per address however many sessions
// ask (single flight), a per-MX-host concurrency and rate limit, a total
// deadline — and the persistent, bounded bbolt cache of address and domain
// results that keeps the gateway from becoming a callout-DoS amplifier.
package callout
