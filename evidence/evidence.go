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
	// Time is absent when the record's clock could not be put on the
	// capture's (a log with no zone and nothing to pair it with).
	Time time.Time `json:"time,omitzero"`
	What string    `json:"what"`
}

// Stamp is when and where one byte of a stream or one log event was seen.
type Stamp struct {
	Time time.Time `json:"time"`
	Ref
}

// Locator maps an offset inside a chunk of reassembled stream bytes to the
// packet that carried that byte. Reassembly can hand several packets' bytes
// over in one chunk; a decoder asks only for the offsets it cares about (the
// first and last byte of a message), so the common case costs nothing.
type Locator interface {
	At(offset int) Stamp
}

// At is a Locator for a chunk that came from a single packet.
type At Stamp

// At returns the same stamp for every offset.
func (a At) At(int) Stamp { return Stamp(a) }
