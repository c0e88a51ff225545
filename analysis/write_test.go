package analysis

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"wiremortem/internal/scale"
	"wiremortem/internal/testenv"
)

// TestConversationsWrittenInOrder: the conversation list, encoded in
// batches on every core and written while the next batch is encoded, is
// each conversation's own JSON in ID order, byte for byte, across several
// batches (a real capture's conversations, HTTP and WebSocket decoded);
// a writer that fails stops it with the writer's error.
func TestConversationsWrittenInOrder(t *testing.T) {
	var seeds []scale.Seed
	for _, name := range []string{"tcp-clean", "ws-echo"} {
		s, err := scale.Load(filepath.Join(testenv.RepoRoot(), "testdata", "captures", name, "capture.pcap"))
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, s...)
	}
	path := filepath.Join(t.TempDir(), "many.pcap")
	if _, err := scale.Write(path, seeds, scale.Options{Size: 5 << 20, Concurrent: 50}); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if n := len(res.convs); n < 3*encodeBatch {
		t.Fatalf("%d conversations, want at least %d (three batches)", n, 3*encodeBatch)
	}
	want := []byte("[")
	for i, c := range res.convs {
		b, err := jsonv1.Marshal(&Conversation{Conversation: c, HTTP: res.decoded[c.ID]})
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			want = append(want, ',')
		}
		want = append(append(want, "\n    "...), b...)
	}
	want = append(want, "\n  ]"...)
	var doc bytes.Buffer
	if err := res.WriteJSON(&doc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc.Bytes(), want) {
		t.Errorf("the document's conversation list is not each conversation's JSON in order (%d conversations)", len(res.convs))
	}
	for _, limit := range []int{100, doc.Len() / 2, doc.Len() - 10} {
		w := &failingWriter{limit: limit}
		if err := res.WriteJSON(w); !errors.Is(err, errFull) {
			t.Errorf("a writer full after %d bytes: %v", limit, err)
		}
	}
}

var errFull = errors.New("full")

type failingWriter struct{ n, limit int }

func (w *failingWriter) Write(b []byte) (int, error) {
	if w.n+len(b) > w.limit {
		return 0, errFull
	}
	w.n += len(b)
	return len(b), nil
}
