package analysis

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"

	"wiremortem/internal/testenv"
)

// TestTableOnlyWritesTheSameTable: the flows table written as
// conversations finish, without keeping them (TableOnly, what `wiremortem
// flows` does), is the table of the full pipeline, byte for byte, on every
// lab capture and on public traces with port reuse, resets and scans.
func TestTableOnlyWritesTheSameTable(t *testing.T) {
	var captures []string
	for _, dir := range labDirs(t) {
		m, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
		captures = append(captures, m...)
	}
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
	for _, dir := range labDirs(t) {
		m, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
		captures = append(captures, m...)
	}
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
