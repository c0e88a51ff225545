package rules

import (
	"net/netip"
	"slices"
	"sort"
	"time"

	"wiremortem/evidence"
	"wiremortem/flows"
)

// What the TCP rules share: how a handshake went, how conversations group
// by listener and time, and the timeouts people configure.

// initialRTO is the SYN retransmission timeout a Linux client starts with
// (TCP_TIMEOUT_INIT, RFC 6298 section 2.1); it doubles on each retry, so
// SYNs go out at +1 s, +3 s, +7 s, +15 s...
const initialRTO = time.Second

// sentSYN reports whether the capture holds the client's SYN.
func sentSYN(c *flows.Conversation) bool { return len(c.Handshake.SYNs) > 0 }

// firstSYN is the client's first SYN; only valid when sentSYN.
func firstSYN(c *flows.Conversation) evidence.Stamp { return c.Handshake.SYNs[0] }

// lastSYN is the client's last captured SYN.
func lastSYN(c *flows.Conversation) evidence.Stamp {
	return c.Handshake.SYNs[len(c.Handshake.SYNs)-1]
}

// neverAnswered reports whether the client's SYNs got neither a SYN-ACK
// nor a RST, and the capture went on long enough after the first one
// (grace) for an answer to have been seen.
func neverAnswered(c *flows.Conversation, captureEnd time.Time, grace time.Duration) bool {
	h := &c.Handshake
	return sentSYN(c) && h.SYNACKCount == 0 && h.RefusedBy == nil && !firstSYN(c).Time.Add(grace).After(captureEnd)
}

// synWait is how long the client waited from its first SYN to the first
// SYN-ACK.
func synWait(c *flows.Conversation) time.Duration {
	if !sentSYN(c) || len(c.Handshake.SYNACKs) == 0 {
		return 0
	}
	return c.Handshake.SYNACKs[0].Time.Sub(firstSYN(c).Time)
}

// timerSYNACKs counts SYN-ACKs the server sent again on its own timer: a
// repeat with no new SYN from the client before it. (A SYN-ACK answering a
// retransmitted SYN is the server answering, not retransmitting.)
func timerSYNACKs(c *flows.Conversation) []evidence.Stamp {
	h := &c.Handshake
	var out []evidence.Stamp
	for i := 1; i < len(h.SYNACKs); i++ {
		prev, this := h.SYNACKs[i-1].Time, h.SYNACKs[i].Time
		answersSYN := false
		for _, s := range h.SYNs {
			if s.Time.After(prev) && !s.Time.After(this) {
				answersSYN = true
				break
			}
		}
		if !answersSYN {
			out = append(out, h.SYNACKs[i])
		}
	}
	return out
}

// byServer groups conversations that pass keep by server endpoint; each
// group is in the order of the conversations (their IDs).
func byServer(convs []*flows.Conversation, keep func(*flows.Conversation) bool) map[netip.AddrPort][]*flows.Conversation {
	out := map[netip.AddrPort][]*flows.Conversation{}
	for _, c := range convs {
		if keep(c) {
			out[c.Server] = append(out[c.Server], c)
		}
	}
	return out
}

// sortedEndpoints returns a map's endpoints in address order, so
// incidents come out in the same order every run.
func sortedEndpoints[V any](m map[netip.AddrPort]V) []netip.AddrPort {
	keys := make([]netip.AddrPort, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Compare(keys[j]) < 0 })
	return keys
}

// groupInTime sorts items (conversations, log records) by at and splits
// them where two neighbours are more than gap apart: each group is one
// episode. Each item's time is read once: on a storm of a million
// conversations, reading it in every comparison was most of the cost.
func groupInTime[T any](items []T, gap time.Duration, at func(T) time.Time) [][]T {
	type timed struct {
		t    time.Time
		item T
	}
	sorted := make([]timed, len(items))
	for i, x := range items {
		sorted[i] = timed{at(x), x}
	}
	slices.SortStableFunc(sorted, func(a, b timed) int { return a.t.Compare(b.t) })
	var groups [][]T
	for i, x := range sorted {
		if i == 0 || x.t.Sub(sorted[i-1].t) > gap {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], x.item)
	}
	return groups
}

// distinctClients counts the client hosts (addresses, not ports).
func distinctClients(convs []*flows.Conversation) int {
	seen := map[netip.Addr]bool{}
	for _, c := range convs {
		seen[c.Client.Addr()] = true
	}
	return len(seen)
}

// peakRate is the largest number of times falling in any window of the
// given width.
func peakRate(times []time.Time, width time.Duration) int {
	sorted := append([]time.Time(nil), times...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
	best, lo := 0, 0
	for hi, t := range sorted {
		for t.Sub(sorted[lo]) >= width {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// firstClose is the conversation's first FIN or RST, nil when neither came.
func firstClose(c *flows.Conversation) *flows.CloseMark { return c.Closing.First }

// firstRST is the earliest RST from either side, nil when none.
func firstRST(c *flows.Conversation) *flows.CloseMark {
	a, b := c.Closing.RSTs[flows.Client], c.Closing.RSTs[flows.Server]
	switch {
	case a == nil:
		return b
	case b == nil || !b.Time.Before(a.Time):
		return a
	}
	return b
}

// lastActivity is the last time either side sent new data up to and
// including at, or the end of the handshake (the first packet when no
// handshake was seen) when no data came before at. Keep-alives, window
// probes and retransmissions are not activity.
func lastActivity(c *flows.Conversation, at time.Time) (evidence.Stamp, flows.Side, bool) {
	var best evidence.Stamp
	side, found := flows.Client, false
	for _, s := range []flows.Side{flows.Client, flows.Server} {
		d := c.From(s).LastData
		if d != nil && !d.Time.After(at) && (!found || d.Time.After(best.Time)) {
			best, side, found = *d, s, true
		}
	}
	if found {
		return best, side, true
	}
	if c.Handshake.ACK != nil {
		return *c.Handshake.ACK, flows.Client, false
	}
	return evidence.Stamp{Time: c.Start, Ref: c.FirstPacket}, flows.Client, false
}

// keyPacketsBetween returns the labelled packets from side with one of the
// labels, strictly after from and before to.
func keyPacketsBetween(c *flows.Conversation, side flows.Side, from, to time.Time, labels ...string) []flows.KeyPacket {
	var out []flows.KeyPacket
	for _, kp := range c.KeyPackets {
		if kp.From != side || !kp.Time.After(from) || !kp.Time.Before(to) {
			continue
		}
		for _, l := range labels {
			if kp.Label == l {
				out = append(out, kp)
				break
			}
		}
	}
	return out
}

// wellKnownTimeouts name defaults people meet in captures; an idle gap or
// a stall that ends at one of them points at the setting.
var wellKnownTimeouts = []struct {
	d    time.Duration
	name string
}{
	{60 * time.Second, "nginx's 60 s defaults (proxy_read_timeout, proxy_send_timeout, send_timeout, client_body_timeout, client_header_timeout) or a cloud load balancer's 60 s idle timeout"},
	{75 * time.Second, "nginx keepalive_timeout (75 s by default)"},
}

// wellKnownTolerance is how close a duration must be to a well-known
// timeout to be named after it.
const wellKnownTolerance = 0.03

// timeoutName names the well-known timeout d matches, or "".
func timeoutName(d time.Duration) string {
	for _, t := range wellKnownTimeouts {
		if near(d, t.d, wellKnownTolerance) {
			return t.name
		}
	}
	return ""
}

// near reports whether d is within ratio of want.
func near(d, want time.Duration, ratio float64) bool {
	diff := d - want
	if diff < 0 {
		diff = -diff
	}
	return float64(diff) <= ratio*float64(want)
}
