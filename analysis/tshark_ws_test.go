package analysis

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"wiremortem/decoders/websocket"
	"wiremortem/internal/testenv"
)

// wsCaptures are the captures with WebSocket traffic: the lab's and the
// public corpus's (Zeek's and pcap2har's test traces, see
// ../shared/corpus/README.md).
func wsCaptures(t *testing.T) []string {
	var out []string
	for _, dir := range labDirs(t) {
		if strings.HasPrefix(filepath.Base(dir), "ws-") || strings.Contains(filepath.Base(dir), "nginx") {
			m, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
			out = append(out, m...)
		}
	}
	for _, rel := range []string{
		"zeek/testing/btest/Traces/http/websocket.pcap",
		"zeek/testing/btest/Traces/websocket/broker-websocket.pcap",
		"zeek/testing/btest/Traces/websocket/jupyter-websocket.pcap",
		"zeek/testing/btest/Traces/websocket/two-binary-fragments.pcap",
		"zeek/testing/btest/Traces/websocket/message-too-big-status.pcap",
		"zeek/testing/btest/Traces/websocket/reply-ping-coalesced.pcap",
		"zeek/testing/btest/Traces/websocket/reply-ping-separate.pcap",
		"zeek/testing/btest/Traces/websocket/fragmented-http-reply.pcap",
		"zeek/testing/btest/Traces/websocket/wstunnel-ssh.pcap",
		"pcap2har/tests/resources/websocket.pcap",
		"pcap2har/tests/resources/ipv4-websocket-segmented.pcap",
	} {
		out = append(out, testenv.Corpus(t, rel))
	}
	return out
}

// TestWebSocketAgainstTshark compares, per capture, the WebSocket frames
// by opcode, the close status codes and the number of 101 answers with
// tshark's websocket and http dissectors.
func TestWebSocketAgainstTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	for _, path := range wsCaptures(t) {
		name := filepath.Base(filepath.Dir(path)) + "/" + filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want := tsharkWebSocket(t, tshark, path)
			res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{ReportConversations: 100000})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			got := wsTally{frames: map[string]int{}}
			for _, c := range res.Document.Conversations {
				if c.HTTP == nil {
					continue
				}
				for _, u := range c.HTTP.Upgrades {
					if u.Response != nil && u.Response.Status == 101 {
						got.upgrades++
					}
				}
				if ws := c.HTTP.WebSocket; ws != nil {
					for k, n := range ws.Frames {
						_, op, _ := strings.Cut(k, " ")
						got.frames[op] += int(n)
					}
					for _, cl := range ws.Closes {
						if cl.Code != 0 { // a Close without a body has no code to compare
							got.closeCodes = append(got.closeCodes, cl.Code)
						}
					}
				}
			}
			sort.Ints(got.closeCodes)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("\n  tshark %v\n      us %v", want, got)
			}
		})
	}
}

type wsTally struct {
	upgrades   int
	frames     map[string]int
	closeCodes []int
}

func (w wsTally) String() string {
	var keys []string
	for k := range w.frames {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, w.frames[k]))
	}
	return fmt.Sprintf("101s=%d frames[%s] close_codes=%v", w.upgrades, strings.Join(parts, " "), w.closeCodes)
}

func tsharkWebSocket(t *testing.T, tshark, path string) wsTally {
	out, err := exec.Command(tshark, "-n", "-r", path, "-Y", "websocket || http.response.code == 101", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
		"-e", "websocket.opcode", "-e", "websocket.payload.close.status_code", "-e", "http.response.code").Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("tshark: %v", err)
	}
	w := wsTally{frames: map[string]int{}}
	for _, line := range bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n")) {
		f := strings.Split(string(line), "\t")
		if len(f) < 3 {
			continue
		}
		for _, op := range strings.Split(f[0], ",") {
			if n, err := strconv.Atoi(op); err == nil {
				w.frames[websocket.OpcodeName(uint8(n))]++
			}
		}
		for _, c := range strings.Split(f[1], ",") {
			if n, err := strconv.Atoi(c); err == nil {
				w.closeCodes = append(w.closeCodes, n)
			}
		}
		for _, c := range strings.Split(f[2], ",") {
			if c == "101" {
				w.upgrades++
			}
		}
	}
	sort.Ints(w.closeCodes)
	return w
}
