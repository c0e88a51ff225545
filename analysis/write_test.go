package analysis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"wiremortem/internal/jsonappend"
	"wiremortem/internal/jsonappend/jsonappendtest"
	"wiremortem/internal/scale"
	"wiremortem/internal/testenv"
)

// TestConversationsWrittenInOrder: the conversation list, encoded in
// batches on every core and written while the next batch is encoded, is
// each conversation's own JSON in ID order, byte for byte, across several
// batches (a real capture's conversations, HTTP and WebSocket decoded);
// a writer that fails stops it with the writer's error.
func TestConversationsWrittenInOrder(t *testing.T) {
	path := labGenerated(t, scale.Options{Size: 5 << 20, Concurrent: 50}, "tcp-clean", "ws-echo")
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

// labGenerated writes a capture of many copies of the named lab
// scenarios' conversations (internal/scale) and returns its path.
func labGenerated(t *testing.T, o scale.Options, scenarios ...string) string {
	t.Helper()
	var paths []string
	for _, name := range scenarios {
		paths = append(paths, filepath.Join(testenv.RepoRoot(), "testdata", "captures", name, "capture.pcap"))
	}
	path := filepath.Join(t.TempDir(), "generated.pcap")
	if _, err := scale.Write(path, loadSeeds(t, paths), o); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadSeeds reads the conversations of captures to be replayed
// (internal/scale).
func loadSeeds(t *testing.T, paths []string) []scale.Seed {
	t.Helper()
	var seeds []scale.Seed
	for _, p := range paths {
		s, err := scale.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, s...)
	}
	return seeds
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

// TestAppendConversationOnCaptures holds the conversation list's fast
// encoding (flows' and http's AppendJSON) to the encoder's bytes on every
// conversation of every lab scenario, corpus capture and generated
// capture (documentCases); flows and decoders/http test every field with
// random records.
func TestAppendConversationOnCaptures(t *testing.T) {
	n, withHTTP, withWS := 0, 0, 0
	for _, files := range documentCases(t) {
		var inputs []Input
		for _, f := range files {
			inputs = append(inputs, Input{Path: f})
		}
		res, err := Run(context.Background(), inputs, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.convs {
			h := res.decoded[c.ID]
			got, err := appendConversation(nil, c, h)
			what := fmt.Sprintf("%s: conversation %d", files[0], c.ID)
			if ok, _ := jsonappendtest.Same(t, what, &Conversation{Conversation: c, HTTP: h}, &jsonappend.Writer{B: got, Err: err}); !ok {
				return
			}
			n++
			if h != nil && h.Protocol == "http" {
				withHTTP++
				if h.WebSocket != nil {
					withWS++
				}
			}
		}
		res.Close()
	}
	if n < 5000 || withHTTP < 1000 || withWS < 100 {
		t.Errorf("compared %d conversations, %d with HTTP, %d with WebSocket: too few", n, withHTTP, withWS)
	}
	t.Logf("%d conversations, %d with HTTP, %d with WebSocket: same bytes", n, withHTTP, withWS)
}

// FuzzConversationJSON holds the conversation list's fast encoding to the
// encoder's bytes on whatever the decoders make of a mutated capture:
// headers, URIs, reasons and close reasons with any bytes in them.
func FuzzConversationJSON(f *testing.F) {
	for _, name := range []string{"ws-bad-accept", "ws-rejected", "nginx-proxy", "ws-abnormal-close"} {
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "captures", name, "capture.pcap"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, capture []byte) {
		path := filepath.Join(t.TempDir(), "capture.pcap")
		if err := os.WriteFile(path, capture, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
		if err != nil {
			return
		}
		defer res.Close()
		for _, c := range res.convs {
			h := res.decoded[c.ID]
			got, err := appendConversation(nil, c, h)
			if ok, _ := jsonappendtest.Same(t, fmt.Sprintf("conversation %d", c.ID), &Conversation{Conversation: c, HTTP: h}, &jsonappend.Writer{B: got, Err: err}); !ok {
				return
			}
		}
	})
}
