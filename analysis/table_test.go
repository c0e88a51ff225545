package analysis

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"wiremortem/internal/memguard"
	"wiremortem/internal/scale"
	"wiremortem/internal/testenv"
)

// TestTableOnlyWritesTheSameTable: the flows table written as
// conversations finish, without keeping them (TableOnly, what `wiremortem
// flows` does), is the table of the full pipeline, byte for byte, on every
// lab capture and on public traces with port reuse, resets and scans.
func TestTableOnlyWritesTheSameTable(t *testing.T) {
	var captures []string
	captures = slices.Concat(labCaptureSets(t)...)
	for _, rel := range []string{"nmap-vsn.pcap", "rotation.pcap", "http/206_example_b.pcap", "tcp/miss_end_data.pcap", "wikipedia.pcap"} {
		captures = append(captures, testenv.Corpus(t, "zeek/testing/btest/Traces/"+rel))
	}
	if len(captures) < 20 {
		t.Fatalf("only %d captures", len(captures))
	}
	for _, path := range captures {
		var tables [2]bytes.Buffer
		for i, tableOnly := range []bool{false, true} {
			res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{NoDecode: true, TableOnly: tableOnly})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.WriteFlowTable(&tables[i]); err != nil {
				t.Fatal(err)
			}
			res.Close()
		}
		if !bytes.Equal(tables[0].Bytes(), tables[1].Bytes()) {
			t.Errorf("%s: the streamed table differs:\n%s\nwant:\n%s", path, tables[1].String(), tables[0].String())
		}
	}
}

// TestNoConversationJSON: a run that will not write the JSON document
// (analyze without --json) skips encoding the conversations and finds the
// same incidents, timeline, rates and report conversations; asking it for
// the JSON or the table afterwards is an error, not an empty list.
func TestNoConversationJSON(t *testing.T) {
	var captures []string
	captures = slices.Concat(labCaptureSets(t)...)
	if len(captures) < 20 {
		t.Fatalf("only %d captures", len(captures))
	}
	for _, path := range captures {
		var docs [2][]byte
		for i, skip := range []bool{false, true} {
			res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{NoConversationJSON: skip})
			if err != nil {
				t.Fatal(err)
			}
			d := *res.Document
			d.Tool = Tool{}
			if docs[i], err = json.Marshal(d); err != nil {
				t.Fatal(err)
			}
			jsonErr, tableErr := res.WriteJSON(io.Discard), res.WriteFlowTable(io.Discard)
			if skip && (jsonErr == nil || tableErr == nil) {
				t.Errorf("%s: writing conversations that were not encoded gave no error (json %v, table %v)", path, jsonErr, tableErr)
			}
			if !skip && (jsonErr != nil || tableErr != nil) {
				t.Errorf("%s: json %v, table %v", path, jsonErr, tableErr)
			}
			res.Close()
		}
		if !bytes.Equal(docs[0], docs[1]) {
			t.Errorf("%s: the document differs without the conversations' JSON", path)
		}
	}
}

// TestNoCaptureHashes: a run whose document and report are not written
// (analyze for its verdict) does not hash the captures, and finds the same
// document otherwise; with hashes, each is the file's SHA-256.
func TestNoCaptureHashes(t *testing.T) {
	checked := 0
	for _, m := range labCaptureSets(t) {
		path := m[0]
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var docs [2][]byte
		for i, skip := range []bool{false, true} {
			res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{NoConversationJSON: true, NoCaptureHashes: skip})
			if err != nil {
				t.Fatal(err)
			}
			d := *res.Document
			res.Close()
			want := fmt.Sprintf("%x", sha256.Sum256(data))
			if skip {
				want = ""
			}
			if got := d.Inputs[0].SHA256; got != want {
				t.Errorf("%s (no hashes %v): sha256 %q, want %q", path, skip, got, want)
			}
			d.Tool, d.Inputs = Tool{}, slices.Clone(d.Inputs)
			d.Inputs[0].SHA256 = ""
			if docs[i], err = json.Marshal(d); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(docs[0], docs[1]) {
			t.Errorf("%s: the document differs without the hash", path)
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d lab captures", checked)
	}
}

// TestReportKeepsCitedConversations: when a capture holds more
// conversations than the report draws, the report keeps those an incident
// cites (their ladders and charts need them), not the first by ID.
func TestReportKeepsCitedConversations(t *testing.T) {
	checked := 0
	for _, m := range labCaptureSets(t) {
		dir := filepath.Dir(m[0])
		var inputs []Input
		for _, p := range m {
			inputs = append(inputs, Input{Path: p, Kind: KindCapture})
		}
		res, err := Run(context.Background(), inputs, Options{ReportConversations: 1, NoConversationJSON: true})
		if err != nil {
			t.Fatal(err)
		}
		doc := res.Document
		res.Close()
		cited := map[int]bool{}
		first := 0
		for _, inc := range doc.Incidents {
			for _, f := range inc.Flows {
				cited[f.Conversation] = true
				if first == 0 || f.Conversation < first {
					first = f.Conversation
				}
			}
		}
		if len(doc.Conversations) != min(1, doc.Summary.Conversations) {
			t.Fatalf("%s: %d report conversations with a cap of 1", dir, len(doc.Conversations))
		}
		if len(cited) == 0 || doc.Summary.Conversations < 2 {
			continue
		}
		if got := doc.Conversations[0].ID; got != first {
			t.Errorf("%s: the report keeps conversation %d, want %d, the first an incident cites", dir, got, first)
		}
		if first > 1 {
			checked++ // the first conversation by ID is not the cited one
		}
	}
	if checked == 0 {
		t.Fatal("no lab capture whose first cited conversation is not its first: the test proves nothing")
	}
}

// TestWritesAfterCloseFail: a closed result has let its conversations go;
// writing them then is an error, never a document with an empty list.
func TestWritesAfterCloseFail(t *testing.T) {
	path := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "tcp-clean", "capture.pcap")
	res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.WriteJSON(io.Discard); err != nil {
		t.Fatal(err)
	}
	res.Close()
	if err := res.WriteJSON(io.Discard); err == nil {
		t.Error("WriteJSON after Close gave no error")
	}
	if err := res.WriteFlowTable(io.Discard); err == nil {
		t.Error("WriteFlowTable after Close gave no error")
	}
}

// TestInterruptedRunIsPartial: a run whose context is cancelled (Ctrl-C)
// stops reading, still gives a whole document of what it read, marked
// partial, and the verdict says so first.
func TestInterruptedRunIsPartial(t *testing.T) {
	path := labGenerated(t, scale.Options{Size: 4 << 20, Concurrent: 50}, "tcp-clean")
	full, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := Run(ctx, []Input{{Path: path, Kind: KindCapture}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if !res.Document.Summary.Partial || full.Document.Summary.Partial {
		t.Fatalf("partial: %v interrupted, %v whole", res.Document.Summary.Partial, full.Document.Summary.Partial)
	}
	if got, all := res.Document.Summary.Packets.Packets, full.Document.Summary.Packets.Packets; got >= all {
		t.Errorf("the interrupted run read %d packets of %d", got, all)
	}
	var doc bytes.Buffer
	if err := res.WriteJSON(&doc); err != nil || !json.Valid(doc.Bytes()) || !bytes.Contains(doc.Bytes(), []byte(`"partial": true`)) {
		t.Errorf("interrupted run's document: %v, valid %v, marked partial %v", err, json.Valid(doc.Bytes()), bytes.Contains(doc.Bytes(), []byte(`"partial": true`)))
	}
	var verdict bytes.Buffer
	WriteVerdict(&verdict, res.Document)
	if !strings.HasPrefix(verdict.String(), "interrupted;") {
		t.Errorf("the verdict does not say it was interrupted:\n%s", verdict.String())
	}
	verdict.Reset()
	WriteVerdict(&verdict, full.Document)
	if strings.Contains(verdict.String(), "interrupted") {
		t.Errorf("the whole run's verdict says interrupted:\n%s", verdict.String())
	}
}

// TestPartialReason: the document says why a run is partial. A cause
// that stops the reading (the memory guard's) is the reason, word for
// word; the same cause arriving once every packet was read (a capture
// smaller than the reader's check interval) marks nothing, since the
// capture was read whole; Ctrl-C marks even that run partial, as before.
func TestPartialReason(t *testing.T) {
	big := labGenerated(t, scale.Options{Size: 4 << 20, Concurrent: 50}, "tcp-clean")
	small := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "tcp-clean", "capture.pcap")
	memory := &memguard.Exceeded{Live: 900 << 20, Limit: 1 << 30}
	for _, tt := range []struct {
		name    string
		path    string
		cause   error
		partial bool
		reason  string
	}{
		{"memory while reading", big, memory, true, memory.Error()},
		{"memory after reading", small, memory, false, ""},
		{"Ctrl-C after reading", small, context.Canceled, true, "interrupted"},
		{"a signal after reading", small, fmt.Errorf("%w: interrupt signal received", context.Canceled), true, "interrupted: context canceled: interrupt signal received"},
	} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(tt.cause)
		res, err := Run(ctx, []Input{{Path: tt.path, Kind: KindCapture}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		sum := res.Document.Summary
		if sum.Partial != tt.partial || sum.PartialReason != tt.reason {
			t.Errorf("%s: partial %v, reason %q; want %v, %q", tt.name, sum.Partial, sum.PartialReason, tt.partial, tt.reason)
		}
		if stopped := res.StoppedBy() != nil; stopped != (tt.path == big) {
			t.Errorf("%s: stopped by %v", tt.name, res.StoppedBy())
		}
		var verdict bytes.Buffer
		WriteVerdict(&verdict, res.Document)
		if first, _, _ := strings.Cut(verdict.String(), "\n"); tt.partial && !strings.HasPrefix(first, tt.reason+"; ") {
			t.Errorf("%s: the verdict's first line does not give the reason: %q", tt.name, first)
		}
	}
}
