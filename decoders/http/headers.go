package http

import (
	"encoding/json"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Headers are the headers kept on a message (wantedHeaders), by canonical
// name. A short slice, not a map: a conversation keeps its messages until
// the report is written, and a map of three headers costs several times
// its contents. In JSON it is an object sorted by name, as a map would be.
type Headers []Header

// Header is one kept header; repeated headers are joined with ", ".
type Header struct {
	Name, Value string
}

// Lookup returns the value of the header with the canonical name, and
// whether the message had it.
func (h Headers) Lookup(name string) (string, bool) {
	for _, x := range h {
		if x.Name == name {
			return x.Value, true
		}
	}
	return "", false
}

// Get returns the value of the header with the canonical name, "" when
// absent.
func (h Headers) Get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// add keeps a header's value, read in place from a header block: copied
// once, cut to limit; a repeated header's values are joined with ", ".
func (h *Headers) add(name string, value []byte, limit int) {
	for i := range *h {
		if x := &(*h)[i]; x.Name == name {
			// The joined string is new: no copy of the block is kept.
			x.Value = truncate(x.Value+", "+string(value), limit)
			return
		}
	}
	*h = append(*h, Header{Name: name, Value: truncate(string(value), limit)})
}

// MarshalJSON writes the headers as encoding/json writes a map of them:
// an object sorted by name, the same bytes as before Headers replaced the
// map (the JSON document is a stable contract).
func (h Headers) MarshalJSON() ([]byte, error) { return json.Marshal(h.asMap()) }

// MarshalJSONTo does the same for go-json-experiment's encoder (the
// document's conversations), through that encoder, so its escaping options and
// its handling of invalid UTF-8 apply as they did to the map.
func (h Headers) MarshalJSONTo(enc *jsontext.Encoder) error {
	return jsonv2.MarshalEncode(enc, h.asMap())
}

func (h Headers) asMap() map[string]string {
	m := make(map[string]string, len(h))
	for _, x := range h {
		m[x.Name] = x.Value
	}
	return m
}

// UnmarshalJSON reads the object MarshalJSON writes.
func (h *Headers) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*h = (*h)[:0]
	for name, value := range m {
		*h = append(*h, Header{Name: name, Value: value})
	}
	slices.SortFunc(*h, func(a, b Header) int { return strings.Compare(a.Name, b.Name) })
	return nil
}
