// Package evidence is the one model of "where did this come from" shared by
// every source: a packet in a capture file, or a line in a log file.
//
// Every event wiremortem produces carries a Ref, so an incident can always
// cite the exact packet (the number Wireshark shows) or the exact log line
// that proves it.
package evidence

import (
	"fmt"
	"time"
)

// Ref points back at one packet or one log line.
// Exactly one of Packet and Line is set (both are 1-based).
type Ref struct {
	Source string `json:"source"`
	Packet int64  `json:"packet,omitempty"`
	Line   int64  `json:"line,omitempty"`
}

// String renders the reference the way a person would cite it in a ticket:
// "capture.pcap #229" or "error.log:7".
func (r Ref) String() string {
	switch {
	case r.Packet > 0:
		return fmt.Sprintf("%s #%d", r.Source, r.Packet)
	case r.Line > 0:
		return fmt.Sprintf("%s:%d", r.Source, r.Line)
	}
	return r.Source
}

// Item is one piece of evidence an incident cites: where, when, and a short
// description written by wiremortem (never prose copied out of a log).
type Item struct {
	Ref
	Time time.Time `json:"time"`
	What string    `json:"what"`
}
