// Package jsonappend appends JSON values byte for byte as the document's
// encoder writes them (go-json-experiment with encoding/json's v1 options:
// HTML-safe strings, RFC 3339 times), without reflection. It serves the
// hot path that writes a record per conversation; a value it has no fast
// way for (a string needing escapes, a time outside years 0-9999) goes
// through that encoder, so the bytes are the same either way.
package jsonappend

import (
	"strconv"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// Options are the encoder's options: what encoding/json's Marshal does.
func Options() jsonv2.Options { return jsonv1.DefaultOptionsV1() }

// Writer appends to B. Err keeps the first error (a time the encoder
// cannot write); the bytes are not to be used then.
type Writer struct {
	B   []byte
	Err error
}

// Raw appends s as it is (a name, punctuation).
func (w *Writer) Raw(s string) { w.B = append(w.B, s...) }

// String appends s as a JSON string; one needing an escape goes through
// the encoder.
func (w *Writer) String(s string) {
	if !Safe(s) {
		w.Value(s) // a string always encodes
		return
	}
	w.B = append(w.B, '"')
	w.B = append(w.B, s...)
	w.B = append(w.B, '"')
}

// Int appends n.
func (w *Writer) Int(n int64) { w.B = strconv.AppendInt(w.B, n, 10) }

// Bool appends true or false.
func (w *Writer) Bool(v bool) { w.B = strconv.AppendBool(w.B, v) }

// Time appends t as a JSON string in RFC 3339 with nanoseconds; a year
// the encoder cannot write fails, as it does.
func (w *Writer) Time(t time.Time) {
	if y := t.Year(); y < 0 || y > 9999 {
		w.Value(t)
		return
	}
	w.B = append(w.B, '"')
	w.B = t.AppendFormat(w.B, time.RFC3339Nano)
	w.B = append(w.B, '"')
}

// Value appends v through the encoder, for the parts with no appender.
func (w *Writer) Value(v any) {
	out := &appender{b: w.B}
	if err := jsonv2.MarshalWrite(out, v, Options()); err != nil {
		if w.Err == nil {
			w.Err = err
		}
		return
	}
	w.B = out.b
}

// appender is an io.Writer that appends to b.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// List appends list as the encoder writes a slice: null when nil, each
// element by item.
func List[T any](w *Writer, list []T, item func(*T, *Writer)) {
	if list == nil {
		w.Raw(`null`)
		return
	}
	w.Raw(`[`)
	for i := range list {
		if i > 0 {
			w.Raw(`,`)
		}
		item(&list[i], w)
	}
	w.Raw(`]`)
}

// Safe reports whether s is written as it is between quotes, with no
// escape.
func Safe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// The field writers take key as it stands before the value, punctuation
// and all (`,"bytes":`, or `{"packets":` for the first field), so an
// appender is one line a field, in the struct's order.

// IntField appends key and n.
func (w *Writer) IntField(key string, n int64) { w.Raw(key); w.Int(n) }

// IntOmitZero appends key and n unless n is 0 (a field tagged omitempty).
func (w *Writer) IntOmitZero(key string, n int64) {
	if n != 0 {
		w.IntField(key, n)
	}
}

// StringField appends key and s.
func (w *Writer) StringField(key, s string) { w.Raw(key); w.String(s) }

// StringOmitEmpty appends key and s unless s is "" (omitempty).
func (w *Writer) StringOmitEmpty(key, s string) {
	if s != "" {
		w.StringField(key, s)
	}
}

// BoolField appends key and v.
func (w *Writer) BoolField(key string, v bool) { w.Raw(key); w.Bool(v) }

// TimeField appends key and t (Time).
func (w *Writer) TimeField(key string, t time.Time) { w.Raw(key); w.Time(t) }
