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
	w.IntOmitZero(`,"messages_omitted":`, s.MessagesOmitted)
	w.Raw(`,"closes":`)
	jsonappend.List(w, s.Closes, (*Close).appendJSON)
	if len(s.Pings) > 0 {
		w.Raw(`,"pings":`)
		jsonappend.List(w, s.Pings, (*PingPong).appendJSON)
	}
	w.IntOmitZero(`,"pings_omitted":`, s.PingsOmitted)
	if len(s.Violations) > 0 {
		w.Raw(`,"violations":`)
		jsonappend.List(w, s.Violations, (*Violation).appendJSON)
	}
	w.IntOmitZero(`,"violations_omitted":`, s.ViolationsOmitted)
	w.StringOmitEmpty(`,"closed_first":`, s.ClosedFirst)
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
		w.IntField(`":`, m[k])
	}
	w.Raw(`}`)
}

func (m *Message) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"from":`)
	m.From.AppendJSON(w)
	w.StringField(`,"opcode":`, m.Opcode)
	w.Raw(`,"start":`)
	m.Start.AppendJSON(w)
	w.Raw(`,"end":`)
	m.End.AppendJSON(w)
	w.IntField(`,"frames":`, int64(m.Frames))
	w.IntField(`,"length":`, m.Length)
	if m.Compressed {
		w.Raw(`,"compressed":true`)
	}
	w.IntOmitZero(`,"decompressed":`, m.Decompressed)
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
	w.StringOmitEmpty(`,"error":`, m.Error)
	w.Raw(`}`)
}

func (c *Close) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"from":`)
	c.From.AppendJSON(w)
	w.Raw(`,`)
	c.Stamp.AppendJSONFields(w)
	w.IntField(`,"code":`, int64(c.Code))
	w.StringOmitEmpty(`,"reason":`, c.Reason)
	w.BoolField(`,"answered":`, c.Answered)
	w.Raw(`}`)
}

func (p *PingPong) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"from":`)
	p.From.AppendJSON(w)
	w.Raw(`,"ping":`)
	p.Ping.AppendJSON(w)
	p.Pong.AppendOptionalJSON(w, `,"pong":`)
	w.IntOmitZero(`,"rtt_ns":`, int64(p.RTT))
	w.Raw(`}`)
}

func (v *Violation) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{`)
	v.Stamp.AppendJSONFields(w)
	w.Raw(`,"from":`)
	v.From.AppendJSON(w)
	w.StringField(`,"kind":`, v.Kind)
	w.StringOmitEmpty(`,"detail":`, v.Detail)
	w.Raw(`}`)
}
