package htmlreport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wiremortem/analysis"
	"wiremortem/internal/testenv"
)

// pipelineLimit is how long one input may take: the seeds take 20 ms.
const pipelineLimit = 10 * time.Second

// FuzzPipeline runs the whole analysis, from a capture's and a log's bytes
// to the JSON document and the HTML page, on arbitrary input: it must not
// panic or hang, the JSON must parse, and the page must hold no element
// or attribute the template did not write. Seeds: real lab captures with
// their logs (an upgrade answered with a wrong accept, a 400 and a 403,
// nginx's 504) and the committed crashers under testdata/fuzz.
func FuzzPipeline(f *testing.F) {
	root := testenv.RepoRoot()
	for _, seed := range [][2]string{
		{"ws-bad-accept/capture.pcap", ""},
		{"ws-rejected/capture.pcap", ""},
		{"upstream-timeout/capture.pcap", "upstream-timeout/error.log"},
		{"upstream-refused/capture.pcap", "upstream-refused/access.log"},
	} {
		capture, err := os.ReadFile(filepath.Join(root, "testdata", "captures", seed[0]))
		if err != nil {
			f.Fatal(err)
		}
		var log []byte
		if seed[1] != "" {
			if log, err = os.ReadFile(filepath.Join(root, "testdata", "captures", seed[1])); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(capture, log)
	}
	f.Fuzz(func(t *testing.T, capture, log []byte) {
		// A hang is a failure too: past the limit the process stops with
		// the input, which the fuzzer keeps as a crasher.
		watchdog := time.AfterFunc(pipelineLimit, func() {
			panic(fmt.Sprintf("the pipeline ran over %v on a %d-byte capture and a %d-byte log", pipelineLimit, len(capture), len(log)))
		})
		defer watchdog.Stop()
		dir := t.TempDir()
		inputs := []analysis.Input{{Path: filepath.Join(dir, "capture.pcap"), Kind: analysis.KindCapture}}
		if err := os.WriteFile(inputs[0].Path, capture, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(log) > 0 {
			path := filepath.Join(dir, "server.log")
			if err := os.WriteFile(path, log, 0o644); err != nil {
				t.Fatal(err)
			}
			if kind, err := analysis.Detect(path); err == nil {
				inputs = append(inputs, analysis.Input{Path: path, Kind: kind})
			}
		}
		res, err := analysis.Run(context.Background(), inputs, analysis.Options{})
		if err != nil {
			return // every input unreadable: a clear error, which is fine
		}
		defer res.Close()
		// A rule that panics loses only its own incidents (rules.Evaluate
		// turns the panic into a warning): still a bug the fuzzer must
		// report.
		for _, w := range res.Document.Warnings {
			if strings.Contains(w.Message, "stopped on a bug") {
				t.Fatalf("%s: %s", w.Source, w.Message)
			}
		}
		var doc bytes.Buffer
		if err := res.WriteJSON(&doc); err != nil {
			t.Fatal(err)
		}
		if !json.Valid(doc.Bytes()) {
			t.Fatalf("the JSON document does not parse: %.300s", doc.Bytes())
		}
		p := parsePage(t, render(t, res.Document))
		for _, f := range p.foreign {
			t.Errorf("injected into the page: %s", f)
		}
	})
}
