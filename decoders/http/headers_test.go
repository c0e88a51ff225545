package http

import (
	"encoding/json"
	"testing"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// TestHeadersJSONIsAMapsJSON: Headers write the bytes a map of the same
// headers wrote before (the JSON document is a stable contract), with both
// encoders the analysis uses, hostile values included, and read them back.
func TestHeadersJSONIsAMapsJSON(t *testing.T) {
	values := []string{"", "plain", `<script>alert("x")</script> & more`, "caf\u00e9 \u2028 \u2029", "ctl\x01\x1f\x7f", "bad utf8 \xff\xfe", `back\slash "quoted"`}
	type withMap struct {
		H map[string]string `json:"headers,omitempty"`
		N int               `json:"n"`
	}
	type withHeaders struct {
		H Headers `json:"headers,omitempty"`
		N int     `json:"n"`
	}
	for i, v := range values {
		var h Headers
		m := map[string]string{}
		for _, name := range []string{"User-Agent", "Host", "Connection", "X-Forwarded-For"}[:i%4+1] {
			h.add(name, []byte(v), maxHeaderValue)
			m[name] = v
		}
		h.add("Host", []byte("again"), maxHeaderValue)
		if old, ok := m["Host"]; ok {
			m["Host"] = old + ", again"
		} else {
			m["Host"] = "again"
		}
		for _, enc := range []struct {
			name string
			fn   func(any) ([]byte, error)
		}{{"encoding/json", json.Marshal}, {"go-json-experiment v1", jsonv1.Marshal}} {
			want, err := enc.fn(withMap{H: m, N: i})
			if err != nil {
				t.Fatal(err)
			}
			got, err := enc.fn(withHeaders{H: h, N: i})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s, value %q:\n got %s\nwant %s", enc.name, v, got, want)
			}
			var back withHeaders
			if err := json.Unmarshal(got, &back); err != nil || len(back.H) != len(m) || back.H.Get("Host") != json2string(t, m["Host"]) {
				t.Errorf("%s: read back %+v (%v)", enc.name, back.H, err)
			}
		}
	}
	for _, enc := range []func(any) ([]byte, error){json.Marshal, jsonv1.Marshal} {
		empty, _ := enc(withHeaders{})
		if string(empty) != `{"n":0}` {
			t.Errorf("no headers: %s, want them left out", empty)
		}
	}
}

// json2string is what a string reads back as after a JSON round trip
// (invalid UTF-8 becomes U+FFFD).
func json2string(t *testing.T, s string) string {
	b, _ := json.Marshal(s)
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
