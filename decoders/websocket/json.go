package websocket

import (
	"encoding/base64"
	"maps"
	"slices"

	"wiremortem/internal/jsonappend"
)

// AppendJSON appends s's JSON form, byte for byte what the document's
// encoder makes of the struct tags (jsonappend), without reflection.
// TestAppendJSONEveryField holds the two to the same bytes.
func (s *Summary) AppendJSON(w *jsonappend.Writer) {
	w.Raw(`{"frames":`)
	appendCounts(w, s.Frames)
	w.Raw(`,"messages":`)
	jsonappend.List(w, s.Messages, (*Message).appendJSON)
	if s.MessagesOmitted != 0 {
		w.Raw(`,"messages_omitted":`)
		w.Int(s.MessagesOmitted)
	}
	w.Raw(`,"closes":`)
	jsonappend.List(w, s.Closes, (*Close).appendJSON)
	if len(s.Pings) > 0 {
		w.Raw(`,"pings":`)
		jsonappend.List(w, s.Pings, (*PingPong).appendJSON)
	}
	if s.PingsOmitted != 0 {
		w.Raw(`,"pings_omitted":`)
		w.Int(s.PingsOmitted)
	}
	if len(s.Violations) > 0 {
		w.Raw(`,"violations":`)
		jsonappend.List(w, s.Violations, (*Violation).appendJSON)
	}
	if s.ViolationsOmitted != 0 {
		w.Raw(`,"violations_omitted":`)
		w.Int(s.ViolationsOmitted)
	}
	if s.ClosedFirst != "" {
		w.Raw(`,"closed_first":`)
		w.String(s.ClosedFirst)
	}
	w.Raw(`,"undecodable":[`)
	w.String(s.Undecodable[0])
	w.Raw(`,`)
	w.String(s.Undecodable[1])
	w.Raw(`]}`)
}

// appendCounts writes a map as the encoder does: null when nil, sorted by
// name; names needing an escape (never ours) go through the encoder.
func appendCounts(w *jsonappend.Writer, m map[string]int64) {
	if m == nil {
		w.Raw(`null`)
		return
	}
	names := slices.Sorted(maps.Keys(m))
	for _, k := range names {
		if !jsonappend.Safe(k) {
			w.Value(m)
			return
		}
	}
	w.Raw(`{`)
	for i, k := range names {
		if i > 0 {
			w.Raw(`,`)
		}
		w.Raw(`"`)
		w.Raw(k)
		w.Raw(`":`)
		w.Int(m[k])
	}
	w.Raw(`}`)
}

func (m *Message) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"from":`)
	m.From.AppendJSON(w)
	w.Raw(`,"opcode":`)
	w.String(m.Opcode)
	w.Raw(`,"start":`)
	m.Start.AppendJSON(w)
	w.Raw(`,"end":`)
	m.End.AppendJSON(w)
	w.Raw(`,"frames":`)
	w.Int(int64(m.Frames))
	w.Raw(`,"length":`)
	w.Int(m.Length)
	if m.Compressed {
		w.Raw(`,"compressed":true`)
	}
	if m.Decompressed != 0 {
		w.Raw(`,"decompressed":`)
		w.Int(m.Decompressed)
	}
	w.Raw(`,"payload":`)
	if m.Payload == nil {
		w.Raw(`null`)
	} else {
		w.Raw(`"`)
		w.B = base64.StdEncoding.AppendEncode(w.B, m.Payload)
		w.Raw(`"`)
	}
	if m.PayloadTruncated {
		w.Raw(`,"payload_truncated":true`)
	}
	if m.Error != "" {
		w.Raw(`,"error":`)
		w.String(m.Error)
	}
	w.Raw(`}`)
}

func (c *Close) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"from":`)
	c.From.AppendJSON(w)
	w.Raw(`,`)
	c.Stamp.AppendJSONFields(w)
	w.Raw(`,"code":`)
	w.Int(int64(c.Code))
	if c.Reason != "" {
		w.Raw(`,"reason":`)
		w.String(c.Reason)
	}
	w.Raw(`,"answered":`)
	w.Bool(c.Answered)
	w.Raw(`}`)
}

func (p *PingPong) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"from":`)
	p.From.AppendJSON(w)
	w.Raw(`,"ping":`)
	p.Ping.AppendJSON(w)
	p.Pong.AppendOptionalJSON(w, `,"pong":`)
	if p.RTT != 0 {
		w.Raw(`,"rtt_ns":`)
		w.Int(int64(p.RTT))
	}
	w.Raw(`}`)
}

func (v *Violation) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{`)
	v.Stamp.AppendJSONFields(w)
	w.Raw(`,"from":`)
	v.From.AppendJSON(w)
	w.Raw(`,"kind":`)
	w.String(v.Kind)
	if v.Detail != "" {
		w.Raw(`,"detail":`)
		w.String(v.Detail)
	}
	w.Raw(`}`)
}
