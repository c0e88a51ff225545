package analysis

import (
	"bytes"
	"encoding/json"
	"io"
)

// WriteJSON writes the full JSON document (docs/json.md): the Document's
// fields with every conversation streamed from the spool in ID order.
func (r *Result) WriteJSON(w io.Writer) error {
	if r.spool.err != nil {
		return r.spool.err
	}
	d := r.Document
	parts := []struct {
		key   string
		value any
	}{
		{"tool", d.Tool},
		{"inputs", d.Inputs},
		{"summary", d.Summary},
		{"incidents", d.Incidents},
		{"incidents_omitted", d.IncidentsOmitted},
		{"conversations", nil},
		{"timeline", d.Timeline},
		{"timeline_omitted", d.TimelineOmitted},
		{"rates", d.Rates},
		{"warnings", d.Warnings},
	}
	bw := &errWriter{w: w}
	bw.str("{")
	for i, p := range parts {
		if i > 0 {
			bw.str(",")
		}
		bw.str("\n  \"" + p.key + "\": ")
		if p.key == "conversations" {
			bw.str("[")
			if r.spool.len() > 0 {
				if bw.err == nil {
					bw.err = r.spool.writeTo(w)
				}
				bw.str("\n  ")
			}
			bw.str("]")
			continue
		}
		b, err := json.Marshal(p.value)
		if err != nil {
			return err
		}
		var ind bytes.Buffer
		json.Indent(&ind, b, "  ", "  ")
		bw.write(ind.Bytes())
	}
	bw.str("\n}\n")
	return bw.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) write(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *errWriter) str(s string) { e.write([]byte(s)) }
