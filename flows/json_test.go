package flows

import (
	"path/filepath"
	"testing"

	"wiremortem/internal/jsonappend"
	"wiremortem/internal/jsonappend/jsonappendtest"
	"wiremortem/internal/lab"
)

// TestAppendJSONOnCaptures holds AppendJSON to the encoder's bytes on every
// conversation of every lab and corpus capture.
func TestAppendJSONOnCaptures(t *testing.T) {
	var paths [][]string
	for _, dir := range labScenarios(t) {
		facts, err := lab.Load(filepath.Join(dir, "facts.json"))
		if err != nil {
			t.Fatal(err)
		}
		if p := labCaptures(dir, &facts); len(p) > 0 {
			paths = append(paths, p)
		}
	}
	for _, p := range corpusCaptures(t) {
		paths = append(paths, []string{p})
	}
	n := 0
	for _, p := range paths {
		convs, _ := track(t, p...)
		for _, c := range convs {
			n++
			w := &jsonappend.Writer{}
			c.AppendJSON(w)
			if ok, _ := jsonappendtest.Same(t, filepath.Base(p[0]), c, w); !ok {
				return
			}
		}
	}
	if n < 250 {
		t.Errorf("only %d conversations in the lab and corpus captures", n)
	}
	t.Logf("%d conversations from %d captures: same bytes", n, len(paths))
}

// TestAppendJSONEveryField holds AppendJSON to the encoder's bytes on
// records with every field set or not, at random (jsonappendtest.Check).
func TestAppendJSONEveryField(t *testing.T) {
	jsonappendtest.Check(t, 1, (*Conversation).AppendJSON)
}
