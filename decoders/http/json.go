package http

import (
	"slices"
	"strings"

	"wiremortem/internal/jsonappend"
)

// AppendJSON appends c's JSON form, byte for byte what the document's
// encoder makes of the struct tags (jsonappend), without reflection.
// TestAppendJSONEveryField holds the two to the same bytes.
func (c *Conversation) AppendJSON(w *jsonappend.Writer) {
	w.StringField(`{"protocol":`, c.Protocol)
	if c.Partial {
		w.Raw(`,"partial":true`)
	}
	w.StringOmitEmpty(`,"partial_reason":`, c.PartialReason)
	w.Raw(`,"exchanges":`)
	jsonappend.List(w, c.Exchanges, (*Exchange).appendJSON)
	w.IntOmitZero(`,"exchanges_omitted":`, int64(c.ExchangesOmitted))
	if len(c.Upgrades) > 0 {
		w.Raw(`,"upgrades":`)
		jsonappend.List(w, c.Upgrades, (*UpgradeHandshake).appendJSON)
	}
	if c.WebSocket != nil {
		w.Raw(`,"websocket":`)
		c.WebSocket.AppendJSON(w)
	}
	w.Raw(`,"undecodable":[`)
	w.String(c.Undecodable[0])
	w.Raw(`,`)
	w.String(c.Undecodable[1])
	w.Raw(`]}`)
}

func (e *Exchange) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"request":`)
	e.Request.appendJSON(w)
	e.Response.appendOptionalJSON(w, `,"response":`)
	if len(e.Interim) > 0 {
		w.Raw(`,"interim":`)
		jsonappend.List(w, e.Interim, func(s *int, w *jsonappend.Writer) { w.Int(int64(*s)) })
	}
	w.Raw(`}`)
}

// appendOptionalJSON appends key (`,"name":`) and m when m is set: a
// *Message field tagged omitempty (as evidence.Stamp's).
func (m *Message) appendOptionalJSON(w *jsonappend.Writer, key string) {
	if m != nil {
		w.Raw(key)
		m.appendJSON(w)
	}
}

// appendJSON writes m, or null for a nil m.
func (m *Message) appendJSON(w *jsonappend.Writer) {
	if m == nil {
		w.Raw(`null`)
		return
	}
	w.Raw(`{"start":`)
	m.Start.AppendJSON(w)
	w.Raw(`,"end":`)
	m.End.AppendJSON(w)
	w.StringOmitEmpty(`,"method":`, m.Method)
	w.StringOmitEmpty(`,"uri":`, m.URI)
	w.StringField(`,"version":`, m.Version)
	w.IntOmitZero(`,"status":`, int64(m.Status))
	w.StringOmitEmpty(`,"reason":`, m.Reason)
	if len(m.Headers) > 0 {
		w.Raw(`,"headers":`)
		m.Headers.appendJSON(w)
	}
	w.IntField(`,"header_bytes":`, int64(m.HeaderBytes))
	w.IntField(`,"body_bytes":`, m.BodyBytes)
	w.IntField(`,"content_length":`, m.ContentLength)
	if m.Chunked {
		w.Raw(`,"chunked":true`)
	}
	w.BoolField(`,"complete":`, m.Complete)
	if len(m.Flags) > 0 {
		w.Raw(`,"flags":[`)
		for i, f := range m.Flags {
			if i > 0 {
				w.Raw(`,`)
			}
			w.String(f)
		}
		w.Raw(`]`)
	}
	w.Raw(`}`)
}

// appendJSON writes the headers as the encoder writes the map MarshalJSON
// makes of them: sorted by name, a repeated name keeping its last value.
// Names needing an escape (never a canonical one) go through the encoder,
// whose order for them is its own.
func (h Headers) appendJSON(w *jsonappend.Writer) {
	var buf [16]Header
	sorted := append(buf[:0], h...)
	for _, x := range sorted {
		if !jsonappend.Safe(x.Name) {
			w.Value(h)
			return
		}
	}
	// Stable: of a repeated name, the last stays last.
	slices.SortStableFunc(sorted, func(a, b Header) int { return strings.Compare(a.Name, b.Name) })
	w.Raw(`{`)
	first := true
	for i, x := range sorted {
		if i+1 < len(sorted) && sorted[i+1].Name == x.Name {
			continue
		}
		if !first {
			w.Raw(`,`)
		}
		first = false
		w.Raw(`"`)
		w.Raw(x.Name)
		w.StringField(`":`, x.Value)
	}
	w.Raw(`}`)
}

func (u *UpgradeHandshake) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"request":`)
	u.Request.appendJSON(w)
	u.Response.appendOptionalJSON(w, `,"response":`)
	w.StringField(`,"protocol":`, u.Protocol)
	w.StringField(`,"verdict":`, u.Verdict)
	w.IntField(`,"waited_ns":`, int64(u.Waited))
	w.StringOmitEmpty(`,"expected_accept":`, u.ExpectedAccept)
	w.StringOmitEmpty(`,"accept":`, u.Accept)
	if len(u.FramesWithoutUpgrade) > 0 {
		w.Raw(`,"frames_without_upgrade":`)
		jsonappend.List(w, u.FramesWithoutUpgrade, (*FrameNote).appendJSON)
	}
	w.Raw(`}`)
}

func (f *FrameNote) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{`)
	f.Stamp.AppendJSONFields(w)
	w.StringField(`,"opcode":`, f.Opcode)
	w.BoolField(`,"masked":`, f.Masked)
	w.IntOmitZero(`,"close_code":`, int64(f.CloseCode))
	w.StringField(`,"hex":`, f.Hex)
	w.Raw(`}`)
}
