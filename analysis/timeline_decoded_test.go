package analysis

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"wiremortem/decoders/http"
	"wiremortem/internal/testenv"
)

// TestDecodedTimelineAgainstTshark checks the timeline's marks of failed
// upgrades and of WebSocket frames sent without one, on the lab's real
// WebSocket captures, against tshark (two passes, for http.response_in):
// an upgrade request no response answered is marked at the request, a
// refusal at the non-101 answer, and seed 000's unmasked Close frame
// (88 02 03 e8) at each packet carrying it on a connection that never got
// a 101. A 101 with a wrong accept key, which tshark does not judge, is
// marked where the decoder found it.
func TestDecodedTimelineAgainstTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	for _, dir := range labDirs(t) {
		base := filepath.Base(dir)
		if !strings.HasPrefix(base, "ws-") && !strings.Contains(base, "nginx") {
			continue
		}
		path := filepath.Join(dir, "capture.pcap")
		t.Run(base, func(t *testing.T) {
			t.Parallel()
			res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			got := map[EventKind][]int64{}
			for _, ev := range res.Document.Timeline {
				got[ev.Kind] = append(got[ev.Kind], ev.Packet)
			}

			want := map[EventKind][]int64{}
			codes := map[string]string{} // response frame -> status
			for _, f := range tsharkFields(t, tshark, path, "http.response", "frame.number", "http.response.code") {
				codes[f[0]] = f[1]
			}
			for _, f := range tsharkFields(t, tshark, path, "http.request && http.upgrade", "frame.number", "http.response_in") {
				switch code := codes[f[1]]; {
				case f[1] == "":
					want[EventUpgradeFailed] = append(want[EventUpgradeFailed], packetNumber(t, f[0]))
				case code != "101":
					want[EventUpgradeFailed] = append(want[EventUpgradeFailed], packetNumber(t, f[1]))
				}
			}
			for _, c := range res.Document.Conversations {
				if c.HTTP == nil {
					continue
				}
				for _, u := range c.HTTP.Upgrades {
					if u.Verdict == http.VerdictBadAccept {
						want[EventUpgradeFailed] = append(want[EventUpgradeFailed], u.Response.Start.Packet)
					}
				}
			}
			upgraded := map[string]bool{}
			for _, f := range tsharkFields(t, tshark, path, "http.response.code == 101", "tcp.stream") {
				upgraded[f[0]] = true
			}
			for _, f := range tsharkFields(t, tshark, path, "tcp.payload == 88:02:03:e8", "frame.number", "tcp.stream") {
				if !upgraded[f[1]] {
					want[EventWSFrameWithoutUpgrade] = append(want[EventWSFrameWithoutUpgrade], packetNumber(t, f[0]))
				}
			}
			for _, kind := range []EventKind{EventUpgradeFailed, EventWSFrameWithoutUpgrade} {
				slices.Sort(got[kind])
				slices.Sort(want[kind])
				if !slices.Equal(got[kind], want[kind]) {
					t.Errorf("%s marks at packets %v, tshark says %v", kind, got[kind], want[kind])
				}
			}
		})
	}
	// The scenarios the marks are for must have them, or the comparison
	// above proves nothing.
	for scenario, kind := range map[string]EventKind{"ws-no-101": EventWSFrameWithoutUpgrade, "ws-rejected": EventUpgradeFailed, "ws-bad-accept": EventUpgradeFailed} {
		path := filepath.Join(testenv.RepoRoot(), "testdata", "captures", scenario, "capture.pcap")
		res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(res.Document.Timeline, func(ev TimelineEvent) bool { return ev.Kind == kind }) {
			t.Errorf("%s: no %s mark on the timeline", scenario, kind)
		}
		res.Close()
	}
}

// tsharkFields returns the fields of the packets matching filter, one row
// a packet (two passes, so that fields that point forward are set).
func tsharkFields(t *testing.T, tshark, path, filter string, fields ...string) [][]string {
	t.Helper()
	args := []string{"-n", "-2", "-r", path, "-Y", filter, "-T", "fields", "-E", "separator=/t"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", filter, err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line != "" {
			rows = append(rows, append(strings.Split(line, "\t"), make([]string, len(fields))...)[:len(fields)])
		}
	}
	return rows
}

func packetNumber(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("tshark gave frame number %q", s)
	}
	return n
}
