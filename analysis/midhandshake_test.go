package analysis

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"wiremortem/decoders/http"
	"wiremortem/flows/capture"
	"wiremortem/internal/pcaptest"
	"wiremortem/internal/testenv"
)

// TestCaptureBeganAfterTheUpgradeRequest: the lab's wrong-accept
// handshake with the packet that carried the client's GET cut out, as when
// tcpdump started a moment too late. The 101 then has no request and no
// key to check its accept against: it is not called bad-accept (it was,
// with an empty expected value, and the ws-bad-accept rule then crashed the
// analysis on the missing request).
func TestCaptureBeganAfterTheUpgradeRequest(t *testing.T) {
	src := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "ws-bad-accept", "capture.pcap")
	var kept []capture.Packet
	cut := 0
	for _, p := range pcaptest.Read(t, src) {
		if bytes.Contains(p.Data, []byte("GET /")) && bytes.Contains(p.Data, []byte("Sec-WebSocket-Key")) {
			cut++
			continue
		}
		kept = append(kept, p)
	}
	path := filepath.Join(t.TempDir(), "late.pcap")
	pcaptest.Write(t, path, kept)
	if cut == 0 {
		t.Fatal("no upgrade request found in the lab capture")
	}
	whole, err := Run(context.Background(), []Input{{Path: src, Kind: KindCapture}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	for _, w := range res.Document.Warnings {
		t.Errorf("warning %s: %s", w.Source, w.Message)
	}
	count := func(doc *Document, rule string) int {
		n := 0
		for _, inc := range doc.Incidents {
			if inc.Rule == rule {
				n++
			}
		}
		return n
	}
	if count(whole.Document, "ws-bad-accept") == 0 {
		t.Fatal("the whole capture has no ws-bad-accept incident")
	}
	if n := count(res.Document, "ws-bad-accept"); n != 0 {
		t.Errorf("%d ws-bad-accept incidents without the request that held the key", n)
	}
	answered := 0
	for _, c := range res.Document.Conversations {
		if c.HTTP == nil {
			continue
		}
		for _, u := range c.HTTP.Upgrades {
			if u.Request == nil && u.Response != nil {
				answered++
				if u.Verdict != http.VerdictOK || u.ExpectedAccept != "" {
					t.Errorf("conversation %d: a 101 without its request: verdict %s, expected accept %q", c.ID, u.Verdict, u.ExpectedAccept)
				}
			}
		}
	}
	if answered == 0 {
		t.Error("no 101 without its request in the cut capture")
	}
}
