package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wsGUID is the fixed GUID of RFC 6455 section 1.3 that the server appends
// to Sec-WebSocket-Key before hashing it into Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func wsKey() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// closeFrame1000Unmasked is what seed 000's monitor sent on a connection
// that was never upgraded: FIN + opcode 8 (close), unmasked, length 2, code
// 1000 (RFC 6455 section 5.5.1).
var closeFrame1000Unmasked = []byte{0x88, 0x02, 0x03, 0xe8}

// maskedClose builds a client close frame (clients must mask, RFC 6455
// section 5.3) with a status code.
func maskedClose(code uint16) []byte {
	var key [4]byte
	rand.Read(key[:])
	payload := []byte{byte(code >> 8), byte(code)}
	frame := []byte{0x88, 0x80 | byte(len(payload)), key[0], key[1], key[2], key[3]}
	for i, b := range payload {
		frame = append(frame, b^key[i%4])
	}
	return frame
}

// upgradeRequest is a client's opening handshake (RFC 6455 section 4.1).
func upgradeRequest(host, uri, key string) string {
	return "GET " + uri + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: wiremortem-lab-monitor\r\n\r\n"
}

// Seed 000: a plain TCP WebSocket server (under strace) that sometimes
// reads the upgrade request and never answers.
const wsMonitorPort = 9501

type upgradeServerArgs struct {
	Listen string `json:"listen"`
	// Answers maps a request URI to how the server answers it:
	// "101", "101-bad-accept", "400", "403", "hang", or "delay:SECONDS"
	// (a 101 after that long).
	Answers map[string]string `json:"answers"`
}

func init() {
	roles["ws-upgrade-server"] = func(raw []byte, r *reporter) error {
		var a upgradeServerArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		ap, err := netip.ParseAddrPort(a.Listen)
		if err != nil {
			return err
		}
		ln, err := listen(ap)
		if err != nil {
			return err
		}
		r.emit(roleEvent{Event: "ready", PID: os.Getpid(), Local: ap.String()})
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return err
			}
			r.accepted(c)
			go serveUpgrade(c, a.Answers)
		}
	}
}

// serveUpgrade answers one opening handshake as told, then handles the
// close: after a 101 it answers the client's close frame with its own
// and closes; otherwise it reads until the client's FIN and closes.
func serveUpgrade(c *net.TCPConn, answers map[string]string) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	answer := answers[req.URL.RequestURI()]
	key := req.Header.Get("Sec-WebSocket-Key")
	switch {
	case answer == "hang":
		io.Copy(io.Discard, br) // the Swoole bug: never answer, read on until the peer gives up
		return
	case answer == "400":
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n"))
		io.Copy(io.Discard, br)
		return
	case answer == "403":
		c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nforbidden\n"))
		io.Copy(io.Discard, br)
		return
	case strings.HasPrefix(answer, "delay:"):
		d, _ := time.ParseDuration(strings.TrimPrefix(answer, "delay:") + "s")
		time.Sleep(d)
	case answer == "101-bad-accept":
		key += "x" // hashes to an Accept the client cannot match
	}
	c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n\r\n"))
	if answer == "101-bad-accept" {
		io.Copy(io.Discard, br) // the client fails the connection
		return
	}
	frame := make([]byte, 8)
	if _, err := io.ReadFull(br, frame); err != nil { // the client's masked close: 2 + 4 mask + 2 code
		return
	}
	c.Write(closeFrame1000Unmasked)
}

// monitorTry is one check by seed 000's monitor: open, send the upgrade,
// wait up to wait for the 101; on a 101 close the WebSocket properly,
// otherwise send the unmasked close frame on the raw connection and close.
type monitorTry struct {
	conv    Conversation
	gotResp bool
	err     error
}

func (e *Env) monitor(id, uri string, server netip.AddrPort, wait time.Duration) monitorTry {
	t := monitorTry{}
	d := dialFrom(e.ctx, e.IP(hostClient), server, 3*time.Second, nil)
	t.conv = Conversation{ID: id, Role: "monitor: WebSocket upgrade " + uri, Client: d.Local.String(), Server: server.String(),
		Files: []string{"capture.pcap"}, Start: d.Start}
	if d.Err != nil {
		t.err = d.Err
		return t
	}
	t.conv.Handshake = HandshakeCompleted
	c := d.Conn
	key := wsKey()
	req := upgradeRequest(server.String(), uri, key)
	c.Write([]byte(req))
	sent := time.Now()
	c.SetReadDeadline(sent.Add(wait))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	c.SetReadDeadline(time.Time{})
	up := &Upgrade{ClientWait: wait.Seconds()}
	t.conv.Upgrade = up
	switch {
	case err != nil && isTimeout(err):
		// The server closes after it reads the client's FIN.
		up.Verdict = UpgradeNoResponse
		up.FramesWithoutUpgrade = hex.EncodeToString(closeFrame1000Unmasked)
		t.conv.HTTP = []HTTPExchange{{Method: "GET", URI: uri}}
		c.Write(closeFrame1000Unmasked)
		at := time.Now().UTC()
		c.Close()
		t.conv.Closes = []Close{{By: SideClient, How: CloseFIN, At: at}, {By: SideServer, How: CloseFIN}}
		t.conv.ClientBytes = int64(len(closeFrame1000Unmasked))
	case err != nil:
		t.err = fmt.Errorf("%s: %w", id, err)
		return t
	default:
		t.gotResp = true
		up.Status = resp.StatusCode
		up.AnswerDelay = time.Since(sent).Seconds()
		t.conv.HTTP = []HTTPExchange{{Method: "GET", URI: uri, Status: resp.StatusCode}}
		switch {
		case resp.StatusCode != http.StatusSwitchingProtocols:
			up.Verdict = UpgradeRejected
			io.Copy(io.Discard, resp.Body)
		case resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key):
			up.Verdict = UpgradeBadAccept
		default:
			up.Verdict = UpgradeOK
			c.Write(maskedClose(1000))
			t.conv.ClientBytes = 8
			reply := make([]byte, len(closeFrame1000Unmasked))
			io.ReadFull(br, reply)
			t.conv.WebSocket = &WebSocket{Close: &WSClose{By: SideClient, Code: 1000, Answered: bytes.Equal(reply, closeFrame1000Unmasked)}}
		}
		// The server closes first after a 101 and a close handshake
		// (RFC 6455 section 7.1.1); after a rejection or a bad Accept the
		// client fails the connection and closes.
		if up.Verdict == UpgradeOK {
			io.Copy(io.Discard, br)
			t.conv.Closes = []Close{{By: SideServer, How: CloseFIN}}
		}
		at := time.Now().UTC()
		c.Close()
		t.conv.Closes = append(t.conv.Closes, Close{By: SideClient, How: CloseFIN, At: at})
		if up.Verdict != UpgradeOK {
			t.conv.Closes = append(t.conv.Closes, Close{By: SideServer, How: CloseFIN}) // after reading the client's FIN
		}
	}
	t.conv.End = time.Now().UTC()
	return t
}

// upgradeScenario runs the upgrade server under strace and one monitor
// try per URI (a new one every interval), and records the joins.
func (e *Env) upgradeScenario(answers map[string]string, uris []string, interval, wait time.Duration) ([]monitorTry, error) {
	server := e.AddrPort(hostServer, wsMonitorPort)
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return nil, err
	}
	p, err := e.startPeer("server", "ws-upgrade-server", upgradeServerArgs{Listen: server.String(), Answers: answers},
		&straceSpec{File: "server.strace", Flags: straceFull()})
	if err != nil {
		return nil, err
	}
	tries := make([]monitorTry, len(uris))
	var wg sync.WaitGroup
	for i, uri := range uris {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tries[i] = e.monitor(fmt.Sprintf("c%d", i+1), uri, server, wait)
		}()
		time.Sleep(interval)
	}
	wg.Wait()
	for _, t := range tries {
		if t.err != nil {
			return nil, t.err
		}
		t.conv.ConnState = "SF"
		ev, err := p.acceptedBy(t.conv.Client, 3*time.Second)
		if err != nil {
			return nil, err
		}
		e.AddConversation(t.conv)
		e.AddStraceJoin(StraceJoin{File: "server.strace", FD: ev.FD, Local: ev.Local, Peer: ev.Peer, Conversation: t.conv.ID})
	}
	time.Sleep(200 * time.Millisecond) // the server's last close
	if err := cap.stop(); err != nil {
		return nil, err
	}
	if err := p.stop(); err != nil {
		return nil, err
	}
	e.setStracePID("server.strace", p.pid)
	return tries, nil
}

const (
	monitorWait     = 5 * time.Second
	monitorInterval = time.Second
	slowAnswer      = 2.9 // seconds: under the 3 s ws-upgrade-no-101 default
)

func runWSNo101(e *Env) error {
	uris := []string{"/ws?try=1", "/ws?try=2", "/ws?try=3", "/ws?try=4", "/ws?try=5", "/ws?try=6"}
	answers := map[string]string{}
	for _, u := range uris {
		answers[u] = "101"
	}
	answers["/ws?try=2"] = "hang"
	answers["/ws?try=5"] = "hang"
	tries, err := e.upgradeScenario(answers, uris, monitorInterval, monitorWait)
	if err != nil {
		return err
	}
	var hung []string
	for _, t := range tries {
		if t.conv.Upgrade.Verdict == UpgradeNoResponse {
			hung = append(hung, t.conv.ID)
		}
	}
	if !slices.Equal(hung, []string{"c2", "c5"}) {
		return fmt.Errorf("unanswered tries %v, want c2 and c5", hung)
	}
	params := map[string]float64{"client_wait_s": monitorWait.Seconds()}
	e.Plant("ws-upgrade-no-101", fmt.Sprintf("the server read the upgrade request of tries 2 and 5 and never answered; after %s the monitor sent 88 02 03 e8 (close 1000, unmasked) on the un-upgraded connection and closed", monitorWait), params, hung...)
	e.Plant("server-read-no-write", "the traced server read the upgrade requests of tries 2 and 5 and wrote nothing on those fds before closing them", nil, hung...)
	return nil
}

func runWSSlow101(e *Env) error {
	uris := []string{"/ws?try=1", "/ws?try=2"}
	answers := map[string]string{"/ws?try=1": "101", "/ws?try=2": fmt.Sprintf("delay:%g", slowAnswer)}
	_, err := e.upgradeScenario(answers, uris, monitorInterval, monitorWait)
	e.Note("try 2's 101 came %g s after the request (server-side sleep); the monitor waits %s", slowAnswer, monitorWait)
	return err
}

func runWSRejected(e *Env) error {
	uris := []string{"/ws?try=1", "/ws/admin"}
	tries, err := e.upgradeScenario(map[string]string{"/ws?try=1": "400", "/ws/admin": "403"}, uris, 300*time.Millisecond, monitorWait)
	if err != nil {
		return err
	}
	for _, t := range tries {
		if t.conv.Upgrade.Verdict != UpgradeRejected {
			return fmt.Errorf("%s: verdict %s", t.conv.ID, t.conv.Upgrade.Verdict)
		}
	}
	e.Plant("ws-upgrade-rejected", "the server answered the upgrade of c1 with 400 and of c2 with 403", nil, "c1", "c2")
	return nil
}

func runWSBadAccept(e *Env) error {
	tries, err := e.upgradeScenario(map[string]string{"/ws": "101-bad-accept"}, []string{"/ws"}, 0, monitorWait)
	if err != nil {
		return err
	}
	if v := tries[0].conv.Upgrade.Verdict; v != UpgradeBadAccept {
		return fmt.Errorf("verdict %s", v)
	}
	e.Plant("ws-bad-accept", "the server answered 101 with a Sec-WebSocket-Accept computed from a different key; the client failed the connection and closed it", nil, "c1")
	return nil
}

// wsDialer is a coder/websocket client whose TCP connections come from
// dialFrom, so the lab knows each client port.
func (e *Env) wsDialer(local netip.Addr, setup func(fd int) error) (*http.Client, func() dialed) {
	var mu sync.Mutex
	var last dialed
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		d := dialFrom(ctx, local, ap, 3*time.Second, setup)
		mu.Lock()
		last = d
		mu.Unlock()
		if d.Err != nil {
			return nil, d.Err
		}
		return d.Conn, nil
	}}
	return &http.Client{Transport: tr}, func() dialed { mu.Lock(); defer mu.Unlock(); return last }
}

// echoServer serves WebSocket echo with coder/websocket at /echo; /abort
// closes the TCP connection without a close handshake after one echo, and
// /fail closes with 1011 after one echo.
func (e *Env) echoServer(addr netip.AddrPort, mode websocket.CompressionMode) error {
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: mode})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, data); err != nil {
				return
			}
			switch r.URL.Path {
			case "/abort":
				c.CloseNow()
				return
			case "/fail":
				c.Close(websocket.StatusInternalError, "backend failure")
				return
			}
		}
	})}
	go srv.Serve(ln)
	e.Defer(func() { srv.Close() })
	return nil
}

// wsMessage is one message the echo client sends, in fragments.
type wsMessage struct {
	typ       websocket.MessageType
	fragments [][]byte
}

func (m wsMessage) payload() []byte { return bytes.Join(m.fragments, nil) }

// echoConversation dials path, sends each message (in its fragments) and
// reads its echo, pings once, and ends the conversation as told: a normal
// close (1000) by the client, or whatever the server does.
func (e *Env) echoConversation(id, role string, server netip.AddrPort, path string, mode websocket.CompressionMode, msgs []wsMessage, ping bool) (Conversation, error) {
	hc, last := e.wsDialer(e.IP(hostClient), nil)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+server.String()+path, &websocket.DialOptions{HTTPClient: hc, CompressionMode: mode})
	d := last()
	conv := Conversation{ID: id, Role: role, Client: d.Local.String(), Server: server.String(), Files: []string{"capture.pcap"}, Start: d.Start}
	if err != nil {
		return conv, fmt.Errorf("%s: %w", id, err)
	}
	defer c.CloseNow()
	conv.Handshake = HandshakeCompleted
	conv.HTTP = []HTTPExchange{{Method: "GET", URI: path, Status: resp.StatusCode}}
	conv.Upgrade = &Upgrade{Verdict: UpgradeOK, Status: resp.StatusCode}
	ws := &WebSocket{Extension: resp.Header.Get("Sec-WebSocket-Extensions")}
	ws.ContextTakeover = ws.Extension != "" && !strings.Contains(ws.Extension, "no_context_takeover")
	conv.WebSocket = ws
	threshold := 0
	if ws.Extension != "" {
		threshold = 512 // coder/websocket compresses messages from 512 bytes without context takeover
		if ws.ContextTakeover {
			threshold = 128 // and from 128 bytes with it
		}
	}
	compressed := func(first []byte) bool { return threshold > 0 && len(first) >= threshold }

	// coder/websocket answers pings and close frames only while a Read is
	// pending, so one goroutine reads for the whole conversation.
	type read struct {
		typ  websocket.MessageType
		data []byte
		err  error
	}
	reads := make(chan read, 1)
	go func() {
		for {
			typ, data, err := c.Read(ctx)
			reads <- read{typ, data, err}
			if err != nil {
				return
			}
		}
	}()
	opcode := map[websocket.MessageType]string{websocket.MessageText: "text", websocket.MessageBinary: "binary"}
	for _, m := range msgs {
		w, err := c.Writer(ctx, m.typ)
		if err != nil {
			return conv, err
		}
		for _, f := range m.fragments {
			if _, err := w.Write(f); err != nil {
				return conv, err
			}
		}
		if err := w.Close(); err != nil {
			return conv, err
		}
		p := m.payload()
		// Writer sends each Write as a frame and Close as an empty final
		// frame. A compressed message goes out as the deflate writer
		// emits output: the lab cannot know how many frames (0).
		msg := WSMessage{From: SideClient, Opcode: opcode[m.typ], Length: len(p), Compressed: compressed(m.fragments[0])}
		if !msg.Compressed {
			msg.Fragments = len(m.fragments) + 1
		}
		ws.Messages = append(ws.Messages, msg)
		conv.ClientBytes += int64(len(p))
		r := <-reads
		if r.err != nil {
			return conv, fmt.Errorf("%s: echo: %w", id, r.err)
		}
		// The server echoes with Conn.Write: one frame without the
		// extension; with it, a data frame and an empty final frame, or
		// as many frames as the deflate writer emits when compressed.
		echo := WSMessage{From: SideServer, Opcode: opcode[r.typ], Length: len(r.data), Compressed: compressed(r.data)}
		switch {
		case threshold == 0:
			echo.Fragments = 1
		case !echo.Compressed:
			echo.Fragments = 2
		}
		ws.Messages = append(ws.Messages, echo)
		conv.ServerBytes += int64(len(r.data))
		if path != "/echo" {
			break // the server ends the conversation after one echo
		}
	}
	if ping {
		if err := c.Ping(ctx); err != nil {
			return conv, err
		}
		ws.Pings = 1
	}
	switch path {
	case "/echo":
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			return conv, err
		}
		ws.Close = &WSClose{By: SideClient, Code: 1000, Reason: "bye", Answered: true}
	case "/abort":
		r := <-reads
		if websocket.CloseStatus(r.err) != -1 {
			return conv, fmt.Errorf("%s: want an abrupt end, got %v", id, r.err)
		}
	case "/fail":
		r := <-reads
		if websocket.CloseStatus(r.err) != websocket.StatusInternalError {
			return conv, fmt.Errorf("%s: want close 1011, got %v", id, r.err)
		}
		ws.Close = &WSClose{By: SideServer, Code: 1011, Reason: "backend failure", Answered: true}
	}
	conv.End = time.Now().UTC()
	return conv, nil
}

// echoMessages: a text, a binary, and a text sent in three fragments;
// compressible ones when big is set.
func echoMessages(big bool) []wsMessage {
	text, bin := []byte("hello, wiremortem"), bytes.Repeat([]byte{0, 1, 2, 3, 0xfe, 0xff}, 50)
	if big {
		text = body(2000)
		bin = bytes.Repeat([]byte("binary block "), 100)
	}
	return []wsMessage{
		{websocket.MessageText, [][]byte{text}},
		{websocket.MessageBinary, [][]byte{bin}},
		{websocket.MessageText, [][]byte{[]byte("frag-one "), []byte("frag-two "), []byte("frag-three")}},
	}
}

func (e *Env) echoScenario(mode websocket.CompressionMode, big bool, paths ...string) error {
	server := e.AddrPort(hostServer, 8080)
	if err := e.echoServer(server, mode); err != nil {
		return err
	}
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	for i, path := range paths {
		conv, err := e.echoConversation(fmt.Sprintf("c%d", i+1), "WebSocket client on "+path, server, path, mode, echoMessages(big), path == "/echo")
		if err != nil {
			return err
		}
		e.AddConversation(conv)
		time.Sleep(100 * time.Millisecond)
	}
	return cap.stop()
}

func runWSEcho(e *Env) error { return e.echoScenario(websocket.CompressionDisabled, false, "/echo") }
func runWSDeflate(e *Env) error {
	return e.echoScenario(websocket.CompressionContextTakeover, true, "/echo")
}
func runWSDeflateNoContext(e *Env) error {
	return e.echoScenario(websocket.CompressionNoContextTakeover, true, "/echo")
}

// chattyMessages are n text messages of 60 to 200 bytes, the same every
// run: a chat or a market feed rather than a demo, and about half long
// enough for coder/websocket to compress when permessage-deflate is on.
func chattyMessages(n int) []wsMessage {
	out := make([]wsMessage, n)
	for i := range out {
		text := fmt.Sprintf(`{"seq":%d,"user":"u%d","text":"%s"}`, i, i%7, strings.ReplaceAll(string(body(60+(i*37)%141)), "\n", " "))
		out[i] = wsMessage{websocket.MessageText, [][]byte{[]byte(text)}}
	}
	return out
}

// runWSChatty: two long WebSocket conversations of small messages, one
// with permessage-deflate and context takeover, one without: past the
// decoder's message cap, and the seed of the benchmarks' WebSocket-heavy
// captures.
func runWSChatty(e *Env) error {
	server := e.AddrPort(hostServer, 8080)
	if err := e.echoServer(server, websocket.CompressionContextTakeover); err != nil {
		return err
	}
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	for i, mode := range []websocket.CompressionMode{websocket.CompressionContextTakeover, websocket.CompressionDisabled} {
		conv, err := e.echoConversation(fmt.Sprintf("c%d", i+1), "chatty WebSocket client", server, "/echo", mode, chattyMessages(400), true)
		if err != nil {
			return err
		}
		e.AddConversation(conv)
		time.Sleep(100 * time.Millisecond)
	}
	return cap.stop()
}

func runWSAbnormalClose(e *Env) error {
	if err := e.echoScenario(websocket.CompressionDisabled, false, "/abort", "/fail"); err != nil {
		return err
	}
	e.Plant("ws-abnormal-close", "after a 101 and one echo the server closed c1's TCP connection without a close handshake, and closed c2 with code 1011", nil, "c1", "c2")
	return nil
}
