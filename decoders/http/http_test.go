package http

import (
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"wiremortem/evidence"
	"wiremortem/internal/testenv"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// step is one push into the decoder: who, what, when (ms after t0).
type step struct {
	from Side
	data string
	at   int
	end  bool
}

func run(t testing.TB, opts Options, chunk int, steps ...step) *Conversation {
	d := NewDecoder(opts)
	packet := int64(0)
	for _, s := range steps {
		at := evidence.Stamp{Time: t0.Add(time.Duration(s.at) * time.Millisecond)}
		if s.end {
			d.End(s.from, at)
			continue
		}
		for i := 0; i < len(s.data); i += chunk {
			packet++
			at.Ref = evidence.Ref{Source: "t.pcap", Packet: packet}
			d.Data(s.from, []byte(s.data[i:min(i+chunk, len(s.data))]), evidence.At(at))
		}
	}
	return d.Result()
}

const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 section 1.3's example

const upgradeRequest = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"

func answer(accept string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n"
}

func TestAcceptKey(t *testing.T) {
	// RFC 6455 section 1.3.
	if got := acceptFor(key); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("accept for the RFC's key = %s", got)
	}
}

func TestUpgradeVerdicts(t *testing.T) {
	closeFrame := "\x88\x02\x03\xe8"
	tests := []struct {
		name    string
		steps   []step
		verdict string
		waited  time.Duration
		status  int
	}{
		{"ok", []step{{Client, upgradeRequest, 0, false}, {Server, answer("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), 3, false}}, VerdictOK, 3 * time.Millisecond, 101},
		{"bad accept", []step{{Client, upgradeRequest, 0, false}, {Server, answer("wrong="), 3, false}}, VerdictBadAccept, 3 * time.Millisecond, 101},
		{"rejected", []step{{Client, upgradeRequest, 0, false}, {Server, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 7, false}}, VerdictRejected, 7 * time.Millisecond, 403},
		{"no response, client closed", []step{{Client, upgradeRequest, 0, false}, {Client, "", 3000, true}}, VerdictNoResponse, 3000 * time.Millisecond, 0},
		// Seed 000: the client gives up after 5 s with an unmasked Close
		// frame on the connection that was never upgraded.
		{"seed 000", []step{{Client, upgradeRequest, 0, false}, {Client, closeFrame, 5000, false}, {Client, "", 5001, true}}, VerdictNotUpgradedButFrames, 5000 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 5, 1000} {
			c := run(t, Options{}, chunk, tt.steps...)
			if len(c.Upgrades) != 1 {
				t.Fatalf("%s chunk %d: %d upgrades", tt.name, chunk, len(c.Upgrades))
			}
			u := c.Upgrades[0]
			if u.Verdict != tt.verdict || u.Waited != tt.waited || u.Protocol != "websocket" {
				t.Errorf("%s chunk %d: verdict %s waited %v protocol %s, want %s %v", tt.name, chunk, u.Verdict, u.Waited, u.Protocol, tt.verdict, tt.waited)
			}
			if tt.status != 0 && (u.Response == nil || u.Response.Status != tt.status) {
				t.Errorf("%s chunk %d: response %+v, want status %d", tt.name, chunk, u.Response, tt.status)
			}
			if tt.verdict == VerdictNotUpgradedButFrames {
				f := u.FramesWithoutUpgrade
				if len(f) != 1 || f[0].Opcode != "close" || f[0].CloseCode != 1000 || f[0].Masked || f[0].Hex != "88 02 03 e8" {
					t.Errorf("chunk %d: frames without upgrade %+v", chunk, f)
				}
			}
		}
	}
}

func TestWebSocketAfterUpgrade(t *testing.T) {
	text := "\x81\x85\x01\x02\x03\x04" + string([]byte{'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1})
	c := run(t, Options{}, 3,
		step{Client, upgradeRequest, 0, false},
		step{Server, answer("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") + "\x81\x02hi", 2, false},
		step{Client, text, 4, false},
	)
	ws := c.WebSocket
	if ws == nil || len(ws.Messages) != 2 {
		t.Fatalf("websocket %+v", ws)
	}
	if string(ws.Messages[0].Payload) != "hi" || string(ws.Messages[1].Payload) != "hello" {
		t.Errorf("messages %q %q", ws.Messages[0].Payload, ws.Messages[1].Payload)
	}
}

func TestExchanges(t *testing.T) {
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	c := run(t, Options{}, 4,
		// Two pipelined requests, the first with a body.
		step{Client, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 0, false},
		step{Server, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok" + chunked, 5, false},
		step{Client, "HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n", 10, false},
		step{Server, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 12, false},
		step{Client, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n", 20, false},
		step{Server, "HTTP/1.0 200 OK\r\n\r\nuntil the close", 22, false},
		step{Server, "", 30, true},
	)
	if c.Protocol != "http" || len(c.Exchanges) != 4 {
		t.Fatalf("protocol %s, %d exchanges: %+v", c.Protocol, len(c.Exchanges), c.Exchanges)
	}
	want := []struct {
		uri    string
		status int
		body   int64
	}{{"/a", 201, 2}, {"/b", 200, 5}, {"/c", 200, 0}, {"/d", 200, 15}}
	for i, w := range want {
		x := c.Exchanges[i]
		if x.Request.URI != w.uri || x.Response == nil || x.Response.Status != w.status {
			t.Errorf("exchange %d: %s -> %+v, want %s -> %d", i, x.Request.URI, x.Response, w.uri, w.status)
			continue
		}
		if w.uri != "/b" && x.Response.BodyBytes != w.body {
			t.Errorf("exchange %d: body %d bytes, want %d", i, x.Response.BodyBytes, w.body)
		}
	}
	if got := c.Exchanges[0].Interim; len(got) != 1 || got[0] != 100 {
		t.Errorf("interim responses %v, want [100]", got)
	}
	if !c.Exchanges[1].Response.Chunked || !c.Exchanges[1].Response.Complete {
		t.Errorf("chunked response %+v", c.Exchanges[1].Response)
	}
}

// TestSimpleRequests: an HTTP/0.9 request is "GET" and a URI on a line
// alone (a strict client sends no blank line after it), answered by the
// body alone up to the close; split anywhere. An extra CRLF between
// keep-alive requests is skipped, not a bad request line.
func TestSimpleRequests(t *testing.T) {
	for _, chunk := range []int{1, 3, 64} {
		for i, request := range []string{"GET /status\r\n", "GET /status\r\n\r\n", "GET /status\n"} {
			// The second body starts like a status line ("H"): the bytes
			// held to tell count as body.
			body := []string{"<html>up</html>\n", "Hello, world!!!\n", "HTTP/0.9 is old\n"}[i]
			c := run(t, Options{}, chunk,
				step{Client, request, 0, false},
				step{Server, body, 2, false},
				step{Server, "", 3, true},
			)
			if len(c.Exchanges) != 1 || c.Undecodable != [2]string{} {
				t.Fatalf("chunk %d, %q: exchanges %+v, undecodable %q", chunk, request, c.Exchanges, c.Undecodable)
			}
			x := c.Exchanges[0]
			if x.Request.Method != "GET" || x.Request.URI != "/status" || x.Request.Version != "HTTP/0.9" || !x.Request.Complete {
				t.Errorf("chunk %d, %q: request %+v", chunk, request, x.Request)
			}
			if r := x.Response; r == nil || r.Version != "HTTP/0.9" || r.Status != 0 || r.BodyBytes != 16 || !r.Complete || r.Start.Packet == 0 {
				t.Errorf("chunk %d, %q: response %+v", chunk, request, r)
			}
		}
	}
	// Not simple requests: another method, a URI with a space, a status
	// line in the answer (a 1.x server answering a 0.9 request).
	c := run(t, Options{}, 64, step{Client, "GET /a\r\n", 0, false}, step{Server, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 1, false})
	if r := c.Exchanges[0].Response; r == nil || r.Status != 200 || r.BodyBytes != 2 {
		t.Errorf("1.0 answer to a 0.9 request: %+v", r)
	}
	for _, line := range []string{"POST /a\r\n\r\n", "GET /a b\r\n\r\n"} {
		c := run(t, Options{}, 64, step{Client, "GET /ok HTTP/1.1\r\n\r\n" + line, 0, false})
		if !strings.HasPrefix(c.Undecodable[Client], "bad request line") {
			t.Errorf("%q: undecodable %q", line, c.Undecodable[Client])
		}
	}
	// Picked up mid-stream, a body line that reads like one is not a
	// request.
	c = run(t, Options{MidStream: true}, 64, step{Client, "body\r\nGET /x\r\n\r\n", 0, false})
	if len(c.Exchanges) != 0 || !strings.HasPrefix(c.Undecodable[Client], "bad request line") {
		t.Errorf("mid-stream \"GET /x\": exchanges %+v, undecodable %q", c.Exchanges, c.Undecodable[Client])
	}
	c = run(t, Options{}, 5,
		step{Client, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 0, false},
		step{Server, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 1, false},
	)
	if len(c.Exchanges) != 2 || c.Exchanges[1].Request.URI != "/b" || c.Undecodable[Client] != "" {
		t.Errorf("CRLFs between requests: %+v, undecodable %q", c.Exchanges, c.Undecodable[Client])
	}
}

func TestSmugglingSignals(t *testing.T) {
	c := run(t, Options{}, 64, step{Client, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, false})
	flags := strings.Join(c.Exchanges[0].Request.Flags, ",")
	if !strings.Contains(flags, "content-length-and-chunked") {
		t.Errorf("flags %q", flags)
	}
	c = run(t, Options{}, 64, step{Client, "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", 0, false})
	if flags := strings.Join(c.Exchanges[0].Request.Flags, ","); !strings.Contains(flags, "conflicting-content-length") {
		t.Errorf("flags %q", flags)
	}
}

func TestNotHTTPAndMidStream(t *testing.T) {
	d := NewDecoder(Options{})
	d.Data(Client, []byte("\x16\x03\x01\x02\x00\x01"), evidence.At{})
	if !d.Done() || d.Result().Protocol != "not-http" {
		t.Errorf("TLS bytes: done %v protocol %q", d.Done(), d.Result().Protocol)
	}
	c := run(t, Options{MidStream: true}, 7,
		step{Client, "ody of a POST\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n", 0, false},
		step{Server, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, false},
	)
	if !c.Partial || len(c.Exchanges) != 1 || c.Exchanges[0].Request.URI != "/next" {
		t.Errorf("mid-stream: partial %v exchanges %+v", c.Partial, c.Exchanges)
	}
}

func TestHeaderCap(t *testing.T) {
	c := run(t, Options{MaxHeaderBytes: 100}, 50, step{Client, "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 200) + "\r\n\r\n", 0, false})
	if !strings.Contains(c.Undecodable[Client], "headers over 100 bytes") {
		t.Errorf("undecodable %q", c.Undecodable[Client])
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add(upgradeRequest, answer("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")+"\x81\x02hi", uint8(3), false)
	f.Add(upgradeRequest+"\x88\x02\x03\xe8", "", uint8(1), false)
	f.Add("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\nbody", uint8(7), true)
	f.Add("GET /\r\n\r\nGET /x HTTP/1.1\r\n\r\n", "HTTP/0.9 body\n", uint8(2), false)
	f.Fuzz(func(t *testing.T, client, server string, chunk uint8, midStream bool) {
		defer testenv.Watchdog(3*time.Second, []byte(client+server))()
		n := int(chunk%32) + 1
		c := run(t, Options{MidStream: midStream, MaxHeaderBytes: 4096}, n,
			step{Client, client, 0, false}, step{Server, server, 1, false},
			step{Client, "", 2, true}, step{Server, "", 3, true})
		if len(c.Exchanges) > 64 {
			t.Fatalf("%d exchanges kept, over the cap", len(c.Exchanges))
		}
	})
}

// TestResultLetsTheDecoderGo checks that the decoded conversation, which
// the analysis keeps until the report is written, does not keep the
// decoder (and its WebSocket decoder with their buffers) alive.
func TestResultLetsTheDecoderGo(t *testing.T) {
	d := NewDecoder(Options{})
	at := evidence.Stamp{Time: t0, Ref: evidence.Ref{Source: "t.pcap", Packet: 1}}
	d.Data(Client, []byte(upgradeRequest), evidence.At(at))
	d.Data(Server, []byte(answer("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")+"\x81\x02hi"), evidence.At(at))
	d.End(Client, at)
	d.End(Server, at)
	c := d.Result()
	gone, wsGone := weak.Make(d), weak.Make(d.ws)
	d = nil
	runtime.GC()
	if gone.Value() != nil || wsGone.Value() != nil {
		t.Fatal("the result keeps the decoders alive")
	}
	if c.WebSocket == nil || len(c.WebSocket.Messages) != 1 || string(c.WebSocket.Messages[0].Payload) != "hi" {
		t.Errorf("result after the decoder went: %+v", c.WebSocket)
	}
}

// TestResultKeepsNoHeaderBlock: what a message keeps (method, URI,
// headers a postmortem needs) must not hold on to its whole header block:
// with real cookies that is kilobytes per request, kept as long as the
// conversation is. 1,000 requests with a 16 KiB cookie each would keep
// 16 MiB; their results must cost well under 2 MiB.
func TestResultKeepsNoHeaderBlock(t *testing.T) {
	cookie := strings.Repeat("c", 16<<10)
	request := "GET /page?id=1 HTTP/1.1\r\nHost: example.com\r\nCookie: " + cookie + "\r\nUser-Agent: test\r\n\r\n"
	response := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSet-Cookie: " + cookie + "\r\n\r\n"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept := make([]*Conversation, 1000)
	for i := range kept {
		kept[i] = run(t, Options{}, 4096, step{Client, request, 0, false}, step{Server, response, 1, false}, step{Client, "", 2, true}, step{Server, "", 2, true})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2<<20 {
		t.Errorf("1,000 decoded requests hold %d KiB: the header blocks are kept", grown>>10)
	}
	if x := kept[999].Exchanges[0]; x.Request.URI != "/page?id=1" || x.Request.Headers.Get("User-Agent") != "test" || x.Response.Status != 200 {
		t.Errorf("exchange %+v", x)
	}
	runtime.KeepAlive(kept)
}

// TestAcceptJudgedOnlyAgainstAKey: a 101 whose request was not captured
// (the capture began after it) or carried no Sec-WebSocket-Key cannot be
// called bad-accept: there is nothing to compute the accept from. A 101
// to a request that carried a key without asking for an upgrade is still
// checked against that key.
func TestAcceptJudgedOnlyAgainstAKey(t *testing.T) {
	const right = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
	plainGET := "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"
	noKey := strings.Replace(upgradeRequest, "Sec-WebSocket-Key: "+key+"\r\n", "", 1)
	tests := []struct {
		name     string
		steps    []step
		verdict  string
		expected string
		request  bool
	}{
		{"101 without its request", []step{{Server, answer("anything="), 3, false}}, VerdictOK, "", false},
		{"upgrade request without a key", []step{{Client, noKey, 0, false}, {Server, answer("anything="), 3, false}}, VerdictOK, "", true},
		{"plain GET with a key, wrong accept", []step{{Client, plainGET, 0, false}, {Server, answer("wrong="), 3, false}}, VerdictBadAccept, right, true},
		{"plain GET with a key, right accept", []step{{Client, plainGET, 0, false}, {Server, answer(right), 3, false}}, VerdictOK, right, true},
	}
	for _, tt := range tests {
		c := run(t, Options{MidStream: true}, 1000, tt.steps...)
		if len(c.Upgrades) != 1 {
			t.Fatalf("%s: %d upgrades", tt.name, len(c.Upgrades))
		}
		u := c.Upgrades[0]
		if u.Verdict != tt.verdict || u.ExpectedAccept != tt.expected || (u.Request != nil) != tt.request {
			t.Errorf("%s: verdict %s expected accept %q request %v, want %s %q %v", tt.name, u.Verdict, u.ExpectedAccept, u.Request != nil, tt.verdict, tt.expected, tt.request)
		}
	}
}
