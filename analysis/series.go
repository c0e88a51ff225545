package analysis

import (
	"cmp"
	"slices"
	"time"
)

// SYNStep counts connection attempts to one listener during one step: the
// report's SYN storm chart. Attempts are placed by their first SYN.
type SYNStep struct {
	Start    time.Time `json:"start"`
	Attempts int       `json:"attempts"`
	// Answered got a SYN-ACK (or a RST: the listener answered, even if to
	// refuse); Unanswered got nothing, the mark of SYNs the kernel dropped
	// (tcp_conn_request with a full accept queue).
	Answered   int `json:"answered"`
	Unanswered int `json:"unanswered"`
	// SYNRetransmissions counts the clients' SYN retries sent during the
	// step (after 1 s, 3 s, 7 s...: tcp_syn_retries), of any attempt.
	SYNRetransmissions int `json:"syn_retransmissions"`
}

// SYNAttempts counts, per step over [from, to], the connection attempts
// in convs towards listener ("ip:port").
func SYNAttempts(convs []Conversation, listener string, from, to time.Time, step time.Duration) []SYNStep {
	if step <= 0 || to.Before(from) {
		return nil
	}
	b := newBuckets(from, to, step)
	out := make([]SYNStep, b.n)
	for i := range out {
		out[i].Start = b.start(i)
	}
	for _, c := range convs {
		h := &c.Handshake
		if len(h.SYNs) == 0 || c.Server.String() != listener {
			continue
		}
		if i, ok := b.index(h.SYNs[0].Time); ok {
			out[i].Attempts++
			if h.SYNACKCount > 0 || h.RefusedBy != nil {
				out[i].Answered++
			} else {
				out[i].Unanswered++
			}
		}
		for _, syn := range h.SYNs[1:] {
			if i, ok := b.index(syn.Time); ok {
				out[i].SYNRetransmissions++
			}
		}
	}
	return out
}

// HalfClosedStep is the most half-closed conversations open at once during
// one step: conversations whose peer sent FIN while the side listed stayed
// in CLOSE_WAIT (RFC 9293 section 3.6), not yet closed.
type HalfClosedStep struct {
	Start time.Time `json:"start"`
	Open  int       `json:"open"`
}

// HalfClosedOverTime counts, per step over [from, to], the conversations
// in convs left half-closed with one of waiting ("ip:port") as the side in
// CLOSE_WAIT. A conversation counts from the first FIN until the waiting
// side's own FIN or RST, or to the end when it never sent one.
func HalfClosedOverTime(convs []Conversation, waiting map[string]bool, from, to time.Time, step time.Duration) []HalfClosedStep {
	if step <= 0 || to.Before(from) {
		return nil
	}
	type change struct {
		at    time.Time
		delta int
	}
	var changes []change
	for _, c := range convs {
		hc := c.Closing.HalfClose
		if hc == nil || !waiting[c.Endpoint(hc.By.Other()).String()] {
			continue
		}
		changes = append(changes, change{hc.Since.Time, +1})
		if !hc.OpenAtEnd {
			changes = append(changes, change{hc.Since.Time.Add(hc.Duration), -1})
		}
	}
	slices.SortFunc(changes, func(a, b change) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.delta, b.delta)) })
	b := newBuckets(from, to, step)
	out := make([]HalfClosedStep, b.n)
	open, next := 0, 0
	for i := range out {
		out[i].Start = b.start(i)
		end := b.start(i + 1)
		peak := open
		for ; next < len(changes) && changes[next].at.Before(end); next++ {
			open += changes[next].delta
			peak = max(peak, open)
		}
		out[i].Open = peak
	}
	return out
}
