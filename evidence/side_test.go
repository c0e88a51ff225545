package evidence

import (
	"encoding/json"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// TestSideJSON: both encoders the analysis uses write a side as its name
// (MarshalJSON for encoding/json, MarshalJSONTo for go-json-experiment's
// with v1 options, as analysis writes the conversations),
// and it reads back.
func TestSideJSON(t *testing.T) {
	for _, s := range []Side{Client, Server} {
		analysis := func(v any) ([]byte, error) { return jsonv2.Marshal(v, jsonv1.DefaultOptionsV1()) }
		for name, marshal := range map[string]func(any) ([]byte, error){"encoding/json": json.Marshal, "go-json-experiment as the analysis runs it": analysis} {
			b, err := marshal(struct {
				From Side `json:"from"`
			}{s})
			if err != nil || string(b) != `{"from":"`+s.String()+`"}` {
				t.Errorf("%s: %s, %v", name, b, err)
			}
			var back struct {
				From Side `json:"from"`
			}
			if err := json.Unmarshal(b, &back); err != nil || back.From != s {
				t.Errorf("%s: read back %v, %v", name, back.From, err)
			}
		}
	}
}
