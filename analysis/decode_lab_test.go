package analysis

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"wiremortem/decoders/http"
	"wiremortem/decoders/websocket"
	"wiremortem/internal/lab"
	"wiremortem/internal/testenv"
)

// labDirs returns every lab scenario directory.
func labDirs(t *testing.T) []string {
	m, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "captures", "*", "facts.json"))
	if len(m) == 0 {
		t.Fatal("no lab scenarios in testdata/captures")
	}
	sort.Strings(m)
	for i := range m {
		m[i] = filepath.Dir(m[i])
	}
	return m
}

// labCaptureSets returns each lab scenario's captures, one list for each
// scenario that has any.
func labCaptureSets(t *testing.T) [][]string {
	var sets [][]string
	for _, dir := range labDirs(t) {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.pcap")); len(m) > 0 {
			sets = append(sets, m)
		}
	}
	return sets
}

// analyseCaptures runs the analysis on a scenario's captures only.
func analyseCaptures(t *testing.T, dir string, facts *lab.Facts) *Result {
	t.Helper()
	var inputs []Input
	for _, f := range facts.Files {
		if f.Kind == lab.KindPcap || f.Kind == lab.KindPcapng {
			inputs = append(inputs, Input{Path: filepath.Join(dir, f.Name), Kind: KindCapture})
		}
	}
	if len(inputs) == 0 {
		return nil
	}
	res, err := Run(context.Background(), inputs, Options{ReportConversations: 10000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	return res
}

// TestLabHTTPAndWebSocket checks the decoders against what the lab did in
// every scenario: each request's method, URI and status, each upgrade's
// verdict and answer delay, and each WebSocket message (side, opcode,
// length, fragments), ping and close.
func TestLabHTTPAndWebSocket(t *testing.T) {
	checked := 0
	for _, dir := range labDirs(t) {
		facts, err := lab.Load(filepath.Join(dir, "facts.json"))
		if err != nil {
			t.Fatal(err)
		}
		interesting := false
		for _, c := range facts.Conversations {
			interesting = interesting || len(c.HTTP) > 0 || c.Upgrade != nil
		}
		if !interesting {
			continue
		}
		t.Run(facts.Scenario, func(t *testing.T) {
			res := analyseCaptures(t, dir, &facts)
			byTuple := map[string]Conversation{}
			for _, c := range res.Document.Conversations {
				byTuple[c.Client.String()+" "+c.Server.String()] = c
			}
			for _, want := range facts.Conversations {
				if len(want.HTTP) == 0 && want.Upgrade == nil {
					continue
				}
				c, ok := byTuple[want.Client+" "+want.Server]
				if !ok {
					t.Errorf("%s: conversation not found", want.ID)
					continue
				}
				checked++
				checkHTTP(t, want, c)
			}
		})
	}
	if checked == 0 {
		t.Fatal("no lab conversation with HTTP facts")
	}
}

func checkHTTP(t *testing.T, want lab.Conversation, c Conversation) {
	t.Helper()
	h := c.HTTP
	if h == nil {
		t.Errorf("%s: not decoded as HTTP", want.ID)
		return
	}
	if len(h.Exchanges) != len(want.HTTP) {
		t.Errorf("%s: %d exchanges, the lab made %d", want.ID, len(h.Exchanges), len(want.HTTP))
	}
	for i, w := range want.HTTP {
		if i >= len(h.Exchanges) {
			break
		}
		x := h.Exchanges[i]
		got := fmt.Sprintf("%s %s", x.Request.Method, x.Request.URI)
		status := 0
		if x.Response != nil {
			status = x.Response.Status
		}
		if got != w.Method+" "+w.URI || status != w.Status {
			t.Errorf("%s exchange %d: %s -> %d, the lab made %s %s -> %d", want.ID, i, got, status, w.Method, w.URI, w.Status)
		}
	}
	if w := want.Upgrade; w != nil {
		if len(h.Upgrades) != 1 {
			t.Errorf("%s: %d upgrades, want 1", want.ID, len(h.Upgrades))
			return
		}
		u := h.Upgrades[0]
		verdict := w.Verdict
		if w.FramesWithoutUpgrade != "" && verdict == http.VerdictNoResponse {
			// The lab records the client's Close frame beside a
			// no-response; the issue names that case
			// not-upgraded-but-frames.
			verdict = http.VerdictNotUpgradedButFrames
		}
		if u.Verdict != verdict {
			t.Errorf("%s: upgrade verdict %s, the lab planted %s", want.ID, u.Verdict, verdict)
		}
		if w.AnswerDelay > 0 && u.Response != nil {
			if d := u.Waited.Seconds() - w.AnswerDelay; math.Abs(d) > 0.01 {
				t.Errorf("%s: answered after %.3fs, the lab waited %.3fs", want.ID, u.Waited.Seconds(), w.AnswerDelay)
			}
		}
		if w.Verdict == http.VerdictNotUpgradedButFrames || w.Verdict == http.VerdictNoResponse {
			if d := u.Waited.Seconds() - w.ClientWait; w.ClientWait > 0 && math.Abs(d) > 0.05 {
				t.Errorf("%s: the client waited %.3fs, the lab's client waited %.3fs", want.ID, u.Waited.Seconds(), w.ClientWait)
			}
		}
		if w.FramesWithoutUpgrade != "" {
			if len(u.FramesWithoutUpgrade) == 0 || strings.ReplaceAll(u.FramesWithoutUpgrade[0].Hex, " ", "") != w.FramesWithoutUpgrade {
				t.Errorf("%s: frames without upgrade %+v, the lab sent %s", want.ID, u.FramesWithoutUpgrade, w.FramesWithoutUpgrade)
			}
		}
	}
	if w := want.WebSocket; w != nil {
		ws := h.WebSocket
		if ws == nil {
			t.Errorf("%s: no WebSocket decoded", want.ID)
			return
		}
		for _, v := range ws.Violations {
			if v.Kind == "truncated-frame" {
				continue // the connection was cut (a reset), not a protocol fault
			}
			t.Errorf("%s: violation %s (%s) in a real library's traffic", want.ID, v.Kind, v.Detail)
		}
		sent := w.Messages
		if limit := websocket.DefaultMaxMessages; len(sent) > limit {
			// The first half and the most recent half are kept, the
			// rest counted.
			sent = append(slices.Clone(sent[:limit/2]), sent[len(sent)-limit/2:]...)
			if ws.MessagesOmitted != int64(len(w.Messages)-limit) {
				t.Errorf("%s: %d messages omitted, want %d of the %d the lab sent", want.ID, ws.MessagesOmitted, len(w.Messages)-limit, len(w.Messages))
			}
		}
		if len(sent) > 0 && len(ws.Messages) != len(sent) {
			t.Errorf("%s: %d messages, want %d", want.ID, len(ws.Messages), len(sent))
		}
		for i, wm := range sent {
			if i >= len(ws.Messages) {
				break
			}
			m := ws.Messages[i]
			length := m.Length
			if m.Compressed {
				length = m.Decompressed
			}
			if m.From.String() != wm.From || m.Opcode != wm.Opcode || length != int64(wm.Length) || (wm.Fragments > 0 && m.Frames != wm.Fragments) || m.Compressed != wm.Compressed {
				t.Errorf("%s message %d: %s %s %d bytes in %d frames (compressed %v); the lab: %s %s %d bytes in %d (compressed %v)",
					want.ID, i, m.From, m.Opcode, length, m.Frames, m.Compressed, wm.From, wm.Opcode, wm.Length, wm.Fragments, wm.Compressed)
			}
		}
		pongs := 0
		for _, p := range ws.Pings {
			if p.From.String() == "client" && p.Pong != nil {
				pongs++
			}
		}
		if pongs != w.Pings {
			t.Errorf("%s: %d answered client pings, the lab sent %d", want.ID, pongs, w.Pings)
		}
		if wc := w.Close; wc != nil {
			if len(ws.Closes) == 0 || ws.Closes[0].From.String() != wc.By || ws.Closes[0].Code != wc.Code || ws.Closes[0].Reason != wc.Reason || ws.Closes[0].Answered != wc.Answered {
				t.Errorf("%s: closes %+v, the lab: %+v", want.ID, ws.Closes, wc)
			}
		}
	}
}
