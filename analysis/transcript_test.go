package analysis

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"wiremortem/decoders/http"
	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/internal/testenv"
)

// TestTranscriptsOfLabCaptures analyses real lab captures (a real TCP
// stack, real WebSocket servers and clients, nginx, strace) and checks
// that each incident's transcripts show what its conversations said, as
// decoded: every
// kept message with its packet and payload, every Close with its code, the
// upgrade's verdict, the TCP end, in time order; and what each scenario is
// about.
func TestTranscriptsOfLabCaptures(t *testing.T) {
	root := testenv.RepoRoot()
	for _, tc := range []struct {
		scenario string
		logs     []string
		clock    ClockOptions
		// want are texts some transcript line of the scenario must hold,
		// in this order across the lines; absent, texts none may hold.
		want, absent []string
	}{
		{"ws-no-101", nil, ClockOptions{}, []string{"GET /ws?try=", "no 101 after 5.0", "close frame (code 1000), unmasked, although no 101 came", "FIN"}, nil},
		// Seed 000's story, the server's side from its trace: it read the
		// request and wrote nothing until the client gave up.
		{"ws-no-101", []string{"server.strace"}, ClockOptions{}, []string{"accept: fd", "GET /ws?try=", "first read on fd", "no 101 after 5.0", "close frame (code 1000)", "returned 0: the peer closed", "close("}, []string{"first write"}},
		// Seed 003's: the peer's FIN, read() returned 0, and no close().
		{"close-wait", []string{"server.strace"}, ClockOptions{}, []string{"accept: fd", "first read on fd", "FIN: closes its side", "returned 0: the peer closed"}, []string{"close("}},
		{"ws-rejected", nil, ClockOptions{}, []string{"GET ", "HTTP/1.1 400 Bad Request", "rejected with 400"}, nil},
		{"ws-bad-accept", nil, ClockOptions{}, []string{"GET /ws", "HTTP/1.1 101", "bad Sec-WebSocket-Accept"}, nil},
		{"ws-abnormal-close", nil, ClockOptions{}, []string{"GET /fail", "upgrade to websocket: ok", "text message, 17 bytes", "Close 1011 “backend failure”, answered", "Close 1011 “backend failure”, in reply"}, nil},
		// Seed 001's: nginx's error line, on the capture's clock once its
		// zone and skew are given (the lab's nginx logs local time,
		// UTC+08:00), between the zero window and the reset.
		{"zero-window-nginx", []string{"error.log"}, ClockOptions{Zones: map[string]*time.Location{"error.log": time.FixedZone("", 8*3600)}, Offsets: map[string]time.Duration{"error.log": 0}},
			[]string{"advertises a zero window", "nginx info: client timed out", "RST: resets the connection"}, nil},
		{"zero-window-nginx", nil, ClockOptions{}, []string{"GET /agent", "HTTP/1.1 101 Switching Protocols", "text message, 1,024 bytes", "advertises a zero window", "RST: resets the connection"}, nil},
	} {
		t.Run(strings.Join(append([]string{tc.scenario}, tc.logs...), "+"), func(t *testing.T) {
			dir := filepath.Join(root, "testdata", "captures", tc.scenario)
			inputs := []Input{{Path: filepath.Join(dir, "capture.pcap"), Kind: KindCapture}}
			for _, l := range tc.logs {
				inputs = append(inputs, Input{Path: filepath.Join(dir, l)})
			}
			res, err := Run(context.Background(), inputs, Options{Clock: tc.clock})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			doc := res.Document
			if len(doc.Incidents) == 0 {
				t.Fatal("no incident")
			}
			tr := NewTranscriber(doc)
			byID := map[int]Conversation{}
			for _, c := range doc.Conversations {
				byID[c.ID] = c
			}
			var all []string
			shown := 0
			for i := range doc.Incidents {
				inc := &doc.Incidents[i]
				cited := map[int]bool{}
				for _, f := range inc.Flows {
					cited[f.Conversation] = true
				}
				for _, script := range tr.For(inc, 3) {
					shown++
					id := script.Conversation.ID
					if !cited[id] {
						t.Fatalf("transcript of conversation %d, which the incident does not cite", id)
					}
					checkTranscript(t, script, byID[id])
					for _, l := range script.Lines {
						all = append(all, l.What+" "+l.Payload)
					}
					if len(tc.logs) > 0 && !slices.ContainsFunc(script.Lines, func(l TranscriptLine) bool { return l.Class == "log" }) {
						t.Errorf("conversation %d shows no line of %v", id, tc.logs)
					}
				}
			}
			if shown == 0 {
				t.Fatal("no incident shows what its conversations said")
			}
			at := 0
			for _, line := range all {
				if at < len(tc.want) && strings.Contains(line, tc.want[at]) {
					at++
				}
			}
			if at < len(tc.want) {
				t.Errorf("no line holds %q (after the lines holding %q); lines:\n%s", tc.want[at], tc.want[:at], strings.Join(all, "\n"))
			}
			for _, a := range tc.absent {
				if slices.ContainsFunc(all, func(line string) bool { return strings.Contains(line, a) }) {
					t.Errorf("a line holds %q; lines:\n%s", a, strings.Join(all, "\n"))
				}
			}
		})
	}
}

// checkTranscript checks one transcript against its conversation's
// decoded records: times never go back, each kept message is a line with
// its packet and payload, each Close a line with its code.
func checkTranscript(t *testing.T, tr Transcript, c Conversation) {
	t.Helper()
	if len(tr.Lines) > MaxTranscriptLines+1 {
		t.Errorf("%d lines, over the cap of %d", len(tr.Lines), MaxTranscriptLines)
	}
	var last time.Time
	for _, l := range tr.Lines {
		if l.Time.IsZero() {
			continue
		}
		if l.Time.Before(last) {
			t.Errorf("conversation %d: line at %v after one at %v", c.ID, l.Time, last)
		}
		last = l.Time
	}
	has := func(class string, at evidence.Stamp, parts ...string) bool {
		return slices.ContainsFunc(tr.Lines, func(l TranscriptLine) bool {
			if l.Class != class || l.Ref != at.Ref || !l.Time.Equal(at.Time) {
				return false
			}
			for _, p := range parts {
				if !strings.Contains(l.What+" "+l.Payload, p) {
					return false
				}
			}
			return true
		})
	}
	if c.HTTP == nil || c.HTTP.WebSocket == nil || len(tr.Lines) > MaxTranscriptLines { // capped: not every record is a line
		return
	}
	ws := c.HTTP.WebSocket
	for _, m := range ws.Messages {
		payload := string(m.Payload)
		if len(payload) > MaxPayloadShown {
			payload = payload[:MaxPayloadShown]
		}
		if !has("message", m.Start, m.Opcode+" message", Safe(payload)) {
			t.Errorf("conversation %d: no line for the %s message at %v", c.ID, m.From, m.Start.Ref)
		}
	}
	for _, cl := range ws.Closes {
		if !has("close", cl.Stamp, fmt.Sprintf("Close %d", cl.Code)) {
			t.Errorf("conversation %d: no line for the Close %d at %v", c.ID, cl.Code, cl.Ref)
		}
	}
}

// TestTranscriptLinesCapped builds a conversation with more exchanges and
// messages than the document keeps and than a transcript shows: the
// lines left out are counted where they were, and the transcript keeps
// its first lines and the most recent ones, which lead to the end.
func TestTranscriptLinesCapped(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	stamp := func(n int) evidence.Stamp {
		return evidence.Stamp{Time: t0.Add(time.Duration(n) * time.Millisecond), Ref: evidence.Ref{Source: "c.pcap", Packet: int64(n)}}
	}
	c := &flows.Conversation{ID: 1, FirstPacket: evidence.Ref{Source: "c.pcap", Packet: 1}}
	c.KeyPackets = []flows.KeyPacket{{Stamp: stamp(1000), From: flows.Server, Label: "rst"}}
	req := &http.Message{Start: stamp(1), End: stamp(1), Method: "GET", URI: "/ws", Version: "HTTP/1.1", Complete: true}
	resp := &http.Message{Start: stamp(2), End: stamp(2), Version: "HTTP/1.1", Status: 101, Reason: "Switching Protocols", Complete: true}
	h := &http.Conversation{
		Protocol:  "http",
		Exchanges: []http.Exchange{{Request: req, Response: resp}},
		Upgrades:  []http.UpgradeHandshake{{Request: req, Response: resp, Protocol: "websocket", Verdict: http.VerdictOK, Waited: time.Millisecond}},
		WebSocket: &websocket.Summary{MessagesOmitted: 36},
	}
	// 64 kept of 100: the first 32 (at 10..41 ms) and the last 32 (at
	// 78..109 ms), as the decoder keeps them.
	for i := range 100 {
		if i < 32 || i >= 68 {
			h.WebSocket.Messages = append(h.WebSocket.Messages, websocket.Message{From: websocket.Client, Opcode: "text", Start: stamp(10 + i), Length: 3, Payload: []byte(fmt.Sprint(i))})
		}
	}
	lines := transcriptLines(c, h, nil)
	if len(lines) != MaxTranscriptLines+1 {
		t.Fatalf("%d lines, want %d and one that counts the rest", len(lines), MaxTranscriptLines+1)
	}
	// 1 request + 1 response + 1 verdict + 64 messages + 1 omitted marker
	// + 1 RST = 69 lines: the first 6, the last 18.
	want := []string{"GET /ws HTTP/1.1", "HTTP/1.1 101", "upgrade to websocket: ok", "0", "1", "2",
		"… 45 more lines here; the JSON document has every one kept …"}
	for i := 83; i < 100; i++ {
		want = append(want, fmt.Sprint(i))
	}
	want = append(want, "RST: resets the connection")
	var got []string
	for _, l := range lines {
		got = append(got, cmpLine(l))
	}
	if !linesStart(got, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if lines[len(lines)-1].Ref.Packet != 1000 || lines[3].Ref.Packet != 10 || !lines[3].Time.Equal(t0.Add(10*time.Millisecond)) || !lines[6].Time.IsZero() {
		t.Errorf("refs and times: %+v, %+v", lines[3], lines[len(lines)-1])
	}

	// With fewer lines, the marker of the messages the decoder left out
	// sits between the first half and the last.
	h.WebSocket.Messages = append(h.WebSocket.Messages[:4], h.WebSocket.Messages[60:]...)
	lines = transcriptLines(c, h, nil)
	got = got[:0]
	for _, l := range lines {
		got = append(got, cmpLine(l))
	}
	want = []string{"GET /ws HTTP/1.1", "HTTP/1.1 101", "upgrade to websocket: ok", "0", "1", "2", "3", "… 36 messages not kept (--ws-messages: the first and the most recent are) …", "96", "97", "98", "99", "RST: resets the connection"}
	if !linesStart(got, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// linesStart says whether each line starts with the wanted text.
func linesStart(got, want []string) bool {
	return slices.EqualFunc(got, want, strings.HasPrefix)
}

// cmpLine is a line's payload, or its text when it has none.
func cmpLine(l TranscriptLine) string {
	if l.Payload != "" {
		return l.Payload
	}
	return l.What
}

func TestPayloadPreview(t *testing.T) {
	long := strings.Repeat("a", MaxPayloadShown+10)
	for _, tc := range []struct {
		m    websocket.Message
		want string
	}{
		{websocket.Message{Opcode: "text", Payload: []byte("hello")}, "hello"},
		{websocket.Message{Opcode: "text", Payload: []byte("line\nnext\x1b[31m")}, `line\x0anext\x1b[31m`},
		{websocket.Message{Opcode: "text", Payload: []byte("bad \xff utf8")}, `bad \xff utf8`},
		{websocket.Message{Opcode: "text", Payload: []byte("cut"), PayloadTruncated: true}, "cut …"},
		{websocket.Message{Opcode: "text", Payload: []byte(long)}, long[:MaxPayloadShown] + " …"},
		{websocket.Message{Opcode: "binary", Payload: []byte{0x1f, 0x8b, 0x08}}, "1f 8b 08"},
		{websocket.Message{Opcode: "binary", Payload: make([]byte, 100)}, strings.TrimSpace(strings.Repeat("00 ", MaxPayloadShown/3)) + " …"},
		{websocket.Message{Opcode: "binary"}, ""},
	} {
		if got := payloadPreview(&tc.m); got != tc.want {
			t.Errorf("%s %q: got %q, want %q", tc.m.Opcode, tc.m.Payload, got, tc.want)
		}
	}
}

func TestCloseLine(t *testing.T) {
	for _, tc := range []struct {
		c     websocket.Close
		reply bool
		want  string
	}{
		{websocket.Close{Code: 1000, Answered: true}, false, "Close 1000, answered"},
		{websocket.Close{Code: 1000}, true, "Close 1000, in reply"},
		{websocket.Close{Code: 1011, Reason: "backend failure"}, false, "Close 1011 “backend failure”, never answered"},
		{websocket.Close{}, false, "Close without a status code, never answered"},
	} {
		if got := closeLine(&tc.c, tc.reply); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// TestTranscriptPings: on the lab's captures with WebSocket pings, each
// ping is a line at tshark's ping frame (websocket.opcode 9), saying it
// was answered as often as tshark sees a pong (opcode 10).
func TestTranscriptPings(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	for _, scenario := range []string{"ws-echo", "ws-chatty", "ws-deflate"} {
		path := filepath.Join(testenv.RepoRoot(), "testdata", "captures", scenario, "capture.pcap")
		res, err := Run(context.Background(), []Input{{Path: path, Kind: KindCapture}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var pings []int64
		answered := 0
		for _, c := range res.Document.Conversations {
			if c.HTTP == nil {
				continue
			}
			for _, l := range transcriptLines(c.Conversation, c.HTTP, nil) {
				if l.Class == "ping" {
					pings = append(pings, l.Ref.Packet)
					if strings.Contains(l.What, "answered by a pong in ") {
						answered++
					}
				}
			}
		}
		res.Close()
		var want []int64
		pongs := 0
		for _, f := range tsharkFields(t, tshark, path, "websocket.opcode == 9 || websocket.opcode == 10", "frame.number", "websocket.opcode") {
			for _, op := range strings.Split(f[1], ",") { // one per frame in the packet
				switch op {
				case "9":
					want = append(want, packetNumber(t, f[0]))
				case "10":
					pongs++
				}
			}
		}
		slices.Sort(pings)
		if len(want) == 0 || !slices.Equal(pings, want) || answered != pongs {
			t.Errorf("%s: ping lines at %v (%d answered), tshark: pings %v, %d pongs", scenario, pings, answered, want, pongs)
		}
	}
}
