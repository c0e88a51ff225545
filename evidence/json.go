package evidence

import "wiremortem/internal/jsonappend"

// AppendJSON appends r as the document's encoder writes it
// (jsonappend); AppendJSONFields appends its fields alone, for the types
// that embed it.
func (r Ref) AppendJSON(w *jsonappend.Writer) {
	w.Raw(`{`)
	r.AppendJSONFields(w)
	w.Raw(`}`)
}

func (r Ref) AppendJSONFields(w *jsonappend.Writer) {
	w.StringField(`"source":`, r.Source)
	w.IntOmitZero(`,"packet":`, r.Packet)
	w.IntOmitZero(`,"line":`, r.Line)
}

// AppendJSON appends s as the document's encoder writes it;
// AppendJSONFields its fields alone, for the types that embed it.
func (s *Stamp) AppendJSON(w *jsonappend.Writer) {
	w.Raw(`{`)
	s.AppendJSONFields(w)
	w.Raw(`}`)
}

func (s *Stamp) AppendJSONFields(w *jsonappend.Writer) {
	w.TimeField(`"time":`, s.Time)
	w.Raw(`,`)
	s.Ref.AppendJSONFields(w)
}

// AppendOptionalJSON appends key (`,"name":`) and s when s is set: a
// *Stamp field tagged omitempty.
func (s *Stamp) AppendOptionalJSON(w *jsonappend.Writer, key string) {
	if s != nil {
		w.Raw(key)
		s.AppendJSON(w)
	}
}

// AppendJSON appends "client" or "server".
func (s Side) AppendJSON(w *jsonappend.Writer) {
	if s == Client {
		w.Raw(`"client"`)
	} else {
		w.Raw(`"server"`)
	}
}
