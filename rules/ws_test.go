package rules

import (
	"strings"
	"testing"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/http"
	"wiremortem/decoders/strace"
	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// The HTTP and WebSocket rules over decoded records built by hand; the
// proof on real captures is analysis's TestLabIncidents. These pin the
// edges: what must not fire, and how summaries read.

// upgradeRequest is a WebSocket upgrade request sent at d.
func upgradeRequest(d time.Duration) *http.Message {
	s := evidence.Stamp{Time: at(d), Ref: evidence.Ref{Source: "test.pcap", Packet: 4}}
	return &http.Message{Start: s, End: s, Method: "GET", URI: "/ws", Version: "HTTP/1.1", Complete: true,
		Headers: http.Headers{{Name: "Host", Value: "example"}, {Name: "Upgrade", Value: "websocket"}, {Name: "Sec-WebSocket-Key", Value: "dGhlIHNhbXBsZSBub25jZQ=="}, {Name: "Sec-WebSocket-Version", Value: "13"}}}
}

// answer is a response with status at d.
func answer(d time.Duration, status int, reason string) *http.Message {
	s := evidence.Stamp{Time: at(d), Ref: evidence.Ref{Source: "test.pcap", Packet: 6}}
	return &http.Message{Start: s, End: s, Version: "HTTP/1.1", Status: status, Reason: reason, Complete: true}
}

// wsInput is an Input whose conversations carry the given decodings, by
// position.
func wsInput(end time.Duration, convs []*flows.Conversation, decoded ...*http.Conversation) *Input {
	in := input(end, convs...)
	in.HTTP = map[int]*http.Conversation{}
	for i, h := range decoded {
		in.HTTP[convs[i].ID] = h
	}
	return in
}

func upgradeOnly(u http.UpgradeHandshake) *http.Conversation {
	u.Protocol = "websocket"
	return &http.Conversation{Protocol: "http", Upgrades: []http.UpgradeHandshake{u}}
}

func summaries(incs []Incident) string {
	var out []string
	for _, inc := range incs {
		out = append(out, inc.Severity.String()+": "+inc.Summary)
	}
	return strings.Join(out, "\n")
}

func TestUpgradeNo101(t *testing.T) {
	closeFrame := http.FrameNote{Stamp: evidence.Stamp{Time: at(5 * s), Ref: evidence.Ref{Source: "test.pcap", Packet: 9}}, Opcode: "close", CloseCode: 1000, Hex: "88 02 03 e8"}
	gaveUp := upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Verdict: http.VerdictNotUpgradedButFrames, Waited: 5 * s, FramesWithoutUpgrade: []http.FrameNote{closeFrame}})
	monitor := func() *flows.Conversation {
		return conv(1, "10.0.0.5:46407", "10.0.0.9:9501").handshake(0).fin(flows.Client, 5*s, ms).done()
	}
	tests := []struct {
		name string
		in   *Input
		want string
	}{
		{"seed 000 without a trace", wsInput(10*s, []*flows.Conversation{monitor()}, gaveUp),
			"high: WebSocket upgrade on 10.0.0.5:46407 -> 10.0.0.9:9501 got no 101 in 5.0 s; the client gave up with a Close frame (1000) on the un-upgraded connection."},
		{"the capture stopped too soon to judge", wsInput(500*ms, []*flows.Conversation{conv(1, "10.0.0.5:46407", "10.0.0.9:9501").handshake(0).done()},
			upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Verdict: http.VerdictNoResponse, Waited: 400 * ms})), ""},
		{"still waiting past the threshold", wsInput(10*s, []*flows.Conversation{conv(1, "10.0.0.5:46407", "10.0.0.9:9501").handshake(0).until(4 * s).done()},
			upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Verdict: http.VerdictNoResponse, Waited: 10 * s})),
			"high: WebSocket upgrade on 10.0.0.5:46407 -> 10.0.0.9:9501 got no 101 in 10.0 s; the connection was still open when the capture ended."},
		{"a client that gave up quickly still got no answer", wsInput(10*s, []*flows.Conversation{conv(1, "10.0.0.5:46407", "10.0.0.9:9501").handshake(0).fin(flows.Client, 200*ms, ms).done()},
			upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Verdict: http.VerdictNoResponse, Waited: 200 * ms})),
			"high: WebSocket upgrade on 10.0.0.5:46407 -> 10.0.0.9:9501 got no 101 in 200 ms; the client gave up and closed."},
		{"a gap in the server's direction may hide the answer", func() *Input {
			c := monitor()
			c.FromServer.MissedBytes = 129
			return wsInput(10*s, []*flows.Conversation{c}, gaveUp)
		}(), ""},
		{"answered", wsInput(10*s, []*flows.Conversation{monitor()},
			upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Response: answer(ms, 101, "Switching Protocols"), Verdict: http.VerdictOK, Waited: ms})), ""},
		{"the server hung up without answering", wsInput(10*s, []*flows.Conversation{conv(1, "10.0.0.5:46407", "10.0.0.9:9501").handshake(0).fin(flows.Server, 2*s, ms).done()},
			upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Verdict: http.VerdictNoResponse, Waited: 2 * s})),
			"high: WebSocket upgrade on 10.0.0.5:46407 -> 10.0.0.9:9501 got no 101 in 2.0 s; the server closed the connection without answering."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "ws-upgrade-no-101", tt.in)
			for _, inc := range got {
				checkIncident(t, inc)
			}
			if s := summaries(got); s != tt.want {
				t.Errorf("got\n%s\nwant\n%s", s, tt.want)
			}
		})
	}

	// With the server's trace: the seed's own words.
	c := monitor()
	in := wsInput(10*s, []*flows.Conversation{c}, gaveUp)
	mark := func(line int64, d time.Duration) strace.Mark {
		return strace.Mark{Ref: evidence.Ref{Source: "server.strace", Line: line}, Time: at(d)}
	}
	read, eof, closed := mark(6, 2*ms), mark(9, 5*s+ms), mark(10, 5*s+2*ms)
	life := &strace.SocketLife{PID: 7, FD: 2032, Kind: "accepted", Local: c.Server, Peer: c.Client, Opened: mark(5, ms),
		BytesRead: 212, Reads: 1, FirstRead: &read, LastRead: &read, EOF: &eof, Closed: &closed}
	sock := &correlate.StraceSocket{Source: "server.strace", Life: life, Conversation: 1, Key: correlate.KeyFourTuple}
	in.Logs = &correlate.Joined{Straces: []*correlate.StraceSocket{sock}, ByConversation: map[int]*correlate.ByConversation{1: {Straces: []*correlate.StraceSocket{sock}}}}
	got := runRule(t, "ws-upgrade-no-101", in)
	want := "high: WebSocket upgrade on 10.0.0.5:46407 -> 10.0.0.9:9501 got no 101 in 5.0 s; the server read the request (strace fd 2032, line 6) and never wrote; the client gave up with a Close frame (1000) on the un-upgraded connection."
	if s := summaries(got); s != want {
		t.Errorf("with strace:\n%s\nwant\n%s", s, want)
	}
	if len(got) == 1 && got[0].Confidence != "high" {
		t.Errorf("confidence %s with the trace, want high", got[0].Confidence)
	}
	// The same trace alone makes server-read-no-write fire, flows from
	// the trace.
	alone := &Input{Logs: &correlate.Joined{Straces: []*correlate.StraceSocket{{Source: "server.strace", Life: life}}}}
	rnw := runRule(t, "server-read-no-write", alone)
	if len(rnw) != 1 || flowSet(rnw[0]) != "10.0.0.5:46407>10.0.0.9:9501" || !strings.Contains(rnw[0].Summary, "read 212 bytes from 10.0.0.5:46407 on fd 2032 (server.strace line 6)") {
		t.Errorf("server-read-no-write on the trace alone: %s", summaries(rnw))
	}
	// A write on the socket, or a peer that left at once, is no incident.
	wrote := *life
	wrote.Writes, wrote.BytesWritten = 1, 129
	quick := *life
	early := mark(9, 100*ms)
	quick.EOF = &early
	for name, l := range map[string]*strace.SocketLife{"answered": &wrote, "peer left at once": &quick} {
		in := &Input{Logs: &correlate.Joined{Straces: []*correlate.StraceSocket{{Source: "server.strace", Life: l}}}}
		if got := runRule(t, "server-read-no-write", in); len(got) != 0 {
			t.Errorf("%s: %s", name, summaries(got))
		}
	}
}

func TestUpgradeRejectedAndBadAccept(t *testing.T) {
	c := func(id int) *flows.Conversation {
		return conv(id, "10.0.0.5:4000"+string(rune('0'+id)), "10.0.0.9:80").handshake(0).fin(flows.Server, s, ms).done()
	}
	refused := func(status int, reason string) *http.Conversation {
		return upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Response: answer(3*ms, status, reason), Verdict: http.VerdictRejected, Waited: 3 * ms})
	}
	got := runRule(t, "ws-upgrade-rejected", wsInput(5*s, []*flows.Conversation{c(1)}, refused(502, "Bad Gateway")))
	if s := summaries(got); s != "high: WebSocket upgrade on 10.0.0.5:40001 -> 10.0.0.9:80 was refused: 502 Bad Gateway instead of 101, after 3 ms." {
		t.Errorf("502: %s", s)
	}
	got = runRule(t, "ws-upgrade-rejected", wsInput(5*s, []*flows.Conversation{c(1), c(2)}, refused(400, "Bad Request"), refused(400, "Bad Request")))
	if len(got) != 1 || got[0].Severity != Medium || !strings.HasPrefix(got[0].Causes[0].Text, "400: the server found the handshake malformed") {
		t.Errorf("two 400s: %s", summaries(got))
	}
	bad := upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Response: answer(ms, 101, "Switching Protocols"), Verdict: http.VerdictBadAccept,
		ExpectedAccept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", Accept: "wrong=", Waited: ms})
	got = runRule(t, "ws-bad-accept", wsInput(5*s, []*flows.Conversation{c(1)}, bad))
	if s := summaries(got); s != "high: WebSocket upgrade on 10.0.0.5:40001 -> 10.0.0.9:80 got a 101 with Sec-WebSocket-Accept wrong= instead of s3pPLMBiTxaQ9kYGzzhZRbK+xOo=; the server closed the connection 999 ms later." {
		t.Errorf("bad accept: %s", s)
	}
}

// upgradedWS is a decoded upgraded conversation with the given closes and
// violations.
func upgradedWS(closes []websocket.Close, violations ...websocket.Violation) *http.Conversation {
	h := upgradeOnly(http.UpgradeHandshake{Request: upgradeRequest(0), Response: answer(ms, 101, "Switching Protocols"), Verdict: http.VerdictOK, Waited: ms})
	h.WebSocket = &websocket.Summary{Frames: map[string]int64{}, Closes: closes, Violations: violations}
	return h
}

func TestAbnormalClose(t *testing.T) {
	closeFrom := func(side websocket.Side, d time.Duration, code int, reason string) websocket.Close {
		return websocket.Close{From: side, Stamp: evidence.Stamp{Time: at(d), Ref: evidence.Ref{Source: "test.pcap", Packet: 20}}, Code: code, Reason: reason}
	}
	fin := func(id int, client, server string, side flows.Side, d time.Duration) *flows.Conversation {
		return conv(id, client, server).handshake(0).fin(side, d, ms).done()
	}
	tests := []struct {
		name  string
		convs []*flows.Conversation
		ws    []*http.Conversation
		want  string
	}{
		{"clean close", []*flows.Conversation{fin(1, "10.0.0.5:4000", "10.0.0.9:80", flows.Server, 2*s)},
			[]*http.Conversation{upgradedWS([]websocket.Close{closeFrom(websocket.Server, 2*s-ms, 1000, ""), closeFrom(websocket.Client, 2*s-ms/2, 1000, "")})}, ""},
		{"no close frame", []*flows.Conversation{fin(1, "10.0.0.5:4000", "10.0.0.9:80", flows.Server, 2*s)},
			[]*http.Conversation{upgradedWS(nil)},
			"medium: WebSocket 10.0.0.5:4000 -> 10.0.0.9:80 ended badly: the server closed the TCP connection with no Close frame."},
		{"internal error", []*flows.Conversation{fin(1, "10.0.0.5:4000", "10.0.0.9:80", flows.Server, 2*s)},
			[]*http.Conversation{upgradedWS([]websocket.Close{closeFrom(websocket.Server, 2*s-ms, 1011, "db down")})},
			`medium: WebSocket 10.0.0.5:4000 -> 10.0.0.9:80 ended badly: the server sent Close 1011 (internal error) (reason "db down").`},
		{"restart is low", []*flows.Conversation{fin(1, "10.0.0.5:4000", "10.0.0.9:80", flows.Server, 2*s)},
			[]*http.Conversation{upgradedWS([]websocket.Close{closeFrom(websocket.Server, 2*s-ms, 1012, "")})},
			"low: WebSocket 10.0.0.5:4000 -> 10.0.0.9:80 ended badly: the server sent Close 1012 (service restart)."},
		{"a proxy's echo is folded into the first end", []*flows.Conversation{
			fin(1, "10.0.0.5:4000", "10.0.0.7:80", flows.Client, 2*s),
			fin(2, "10.0.0.7:5000", "10.0.0.9:9000", flows.Client, 2*s+ms)},
			[]*http.Conversation{upgradedWS(nil), upgradedWS(nil)},
			"medium: WebSocket 10.0.0.5:4000 -> 10.0.0.7:80 ended badly: the client closed the TCP connection with no Close frame."},
		{"still open at the end", []*flows.Conversation{conv(1, "10.0.0.5:4000", "10.0.0.9:80").handshake(0).done()},
			[]*http.Conversation{upgradedWS(nil)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "ws-abnormal-close", wsInput(10*s, tt.convs, tt.ws...))
			for _, inc := range got {
				checkIncident(t, inc)
			}
			if s := summaries(got); s != tt.want {
				t.Errorf("got\n%s\nwant\n%s", s, tt.want)
			}
		})
	}
}

func TestProtocolViolation(t *testing.T) {
	v := func(kind string, from websocket.Side) websocket.Violation {
		return websocket.Violation{Stamp: evidence.Stamp{Time: at(s), Ref: evidence.Ref{Source: "test.pcap", Packet: 12}}, From: from, Kind: kind}
	}
	c := []*flows.Conversation{conv(1, "10.0.0.5:4000", "10.0.0.9:80").handshake(0).done()}
	tests := []struct {
		name string
		vs   []websocket.Violation
		want string
	}{
		{"unmasked client frames", []websocket.Violation{v("unmasked-client-frame", websocket.Client), v("unmasked-client-frame", websocket.Client)},
			"medium: The client 10.0.0.5:4000 of 10.0.0.9:80 sent 2 frames breaking RFC 6455 on 1 connection: unmasked-client-frame (2)."},
		{"only the decoder lost its place", []websocket.Violation{v("resynchronised", websocket.Server), v("undecodable", websocket.Server)}, ""},
		{"a harmless length encoding", []websocket.Violation{v("non-minimal-length", websocket.Server)},
			"low: The server 10.0.0.9:80 sent 1 frame breaking RFC 6455 on 1 connection: non-minimal-length (1)."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "ws-protocol-violation", wsInput(10*s, c, upgradedWS(nil, tt.vs...)))
			for _, inc := range got {
				checkIncident(t, inc)
			}
			if s := summaries(got); s != tt.want {
				t.Errorf("got\n%s\nwant\n%s", s, tt.want)
			}
		})
	}
}
