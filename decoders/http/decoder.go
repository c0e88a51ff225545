package http

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
)

// Decoder decodes one conversation. Feed it with Data, Gap and End in the
// order the bytes were captured, then read Result.
type Decoder struct {
	opts  Options
	conv  Conversation
	sides [2]half
	// pending are requests waiting for their response, oldest first.
	pending []*Exchange
	// upgrade is the handshake whose answer is awaited, or that switched
	// the conversation.
	upgrade *UpgradeHandshake
	ws      *websocket.Decoder
	ring    int
	done    bool
	last    evidence.Stamp
}

// mode is what a side's bytes are being read as.
type mode uint8

const (
	modeDetect      mode = iota // first bytes: is it HTTP?
	modeHeaders                 // collecting a start line and headers
	modeBody                    // bodyLeft bytes of body to skip
	modeChunkSize               // reading a chunk-size line
	modeChunkData               // skipping chunk data, then its CRLF
	modeChunkEnd                // the CRLF after chunk data
	modeTrailers                // trailer lines after the last chunk
	modeUntilClose              // a response body delimited by the close
	modeUpgradeWait             // client bytes after an upgrade request
	modeWebSocket
	modeOpaque // after a non-WebSocket upgrade or CONNECT: not decoded
	modeBroken
)

// half is one side's parser.
type half struct {
	side     Side
	mode     mode
	buf      []byte // start line and headers being collected; chunk lines
	start    evidence.Stamp
	msg      *Message
	bodyLeft int64
	// afterUpgrade holds client bytes sent after an upgrade request, until
	// the answer says what they are.
	afterUpgrade []byte
	afterStart   evidence.Stamp
}

// NewDecoder returns a decoder for one conversation.
func NewDecoder(opts Options) *Decoder {
	opts.defaults()
	d := &Decoder{opts: opts}
	d.sides[Client].side, d.sides[Server].side = Client, Server
	d.conv.Exchanges = []Exchange{}
	return d
}

// Done reports that the conversation is not HTTP (or can no longer be
// decoded), so its bytes need not be reassembled any more.
func (d *Decoder) Done() bool { return d.done }

// Result returns what was decoded; call it after the last End.
func (d *Decoder) Result() *Conversation {
	if d.upgrade != nil && d.upgrade.Response == nil {
		d.finishUnanswered()
	}
	for _, x := range d.pending {
		d.keep(*x)
	}
	d.pending = nil
	if d.ws != nil {
		d.conv.WebSocket = d.ws.Summary()
	}
	// A copy, so that keeping the result does not keep the decoder (and
	// the WebSocket decoder it holds) alive after the conversation ends.
	conv := d.conv
	return &conv
}

// Data decodes the next in-order bytes sent by side.
func (d *Decoder) Data(from Side, b []byte, loc evidence.Locator) {
	if d.done || len(b) == 0 {
		return
	}
	if !d.pastHTTP() {
		// d.last is read only for an upgrade still unanswered at the
		// end, which cannot be once both sides switched protocols (a
		// lookup per chunk of a long WebSocket conversation saved).
		d.last = loc.At(len(b) - 1)
	}
	h := &d.sides[from]
	off := 0
	for off < len(b) && !d.done {
		before := h.mode
		n := d.step(h, b[off:], loc, off)
		if n == 0 && h.mode == before {
			break
		}
		off += n
	}
}

// WebSocket returns the decoder every later byte goes to unchanged once
// the conversation switched to WebSocket, nil before (and for any other
// protocol). Data to it is Data to d; Gap and End still go through d.
func (d *Decoder) WebSocket() *websocket.Decoder {
	if d.sides[Client].mode != modeWebSocket {
		return nil
	}
	return d.ws
}

// pastHTTP reports whether both sides switched protocols for good (to
// WebSocket or an undecoded protocol): no HTTP is parsed any more.
func (d *Decoder) pastHTTP() bool {
	m := d.sides[Client].mode
	return (m == modeWebSocket || m == modeOpaque) && d.sides[Server].mode == m
}

// Gap says bytes of side were lost.
func (d *Decoder) Gap(from Side, missing int, at evidence.Stamp) {
	h := &d.sides[from]
	switch h.mode {
	case modeWebSocket:
		d.ws.Gap(from, missing, at)
		return
	case modeOpaque, modeBroken:
		return
	case modeBody, modeUntilClose:
		if h.mode == modeBody && int64(missing) < h.bodyLeft {
			// The hole is inside a body we were skipping anyway.
			h.bodyLeft -= int64(missing)
			return
		}
	}
	if h.msg != nil {
		h.msg.Flags = append(h.msg.Flags, fmt.Sprintf("gap-of-%d-bytes", missing))
	}
	d.conv.Partial = true
	d.conv.PartialReason = fmt.Sprintf("%d bytes of the %s's stream were not captured", missing, from)
	// Resynchronise at the next line that starts a message.
	h.mode, h.buf, h.msg = modeDetect, h.buf[:0], nil
}

// End says side sent all it will.
func (d *Decoder) End(from Side, at evidence.Stamp) {
	h := &d.sides[from]
	if at.Time.After(d.last.Time) {
		d.last = at
	}
	switch h.mode {
	case modeWebSocket:
		d.ws.End(from, at)
	case modeUntilClose:
		if h.msg != nil {
			h.msg.Complete = true
			d.finishMessage(h, at)
		}
	case modeUpgradeWait:
		// The client closed without the upgrade being answered.
	}
	if h.msg != nil && !h.msg.Complete {
		h.msg.End = at
		d.finishMessage(h, at)
	}
}

// step consumes bytes in the side's current mode and returns how many.
func (d *Decoder) step(h *half, b []byte, loc evidence.Locator, base int) int {
	switch h.mode {
	case modeDetect:
		return d.detect(h, b, loc, base)
	case modeHeaders:
		return d.headers(h, b, loc, base)
	case modeBody:
		n := int(min(int64(len(b)), h.bodyLeft))
		h.bodyLeft -= int64(n)
		h.msg.BodyBytes += int64(n)
		if h.bodyLeft == 0 {
			h.msg.Complete = true
			d.finishMessage(h, loc.At(base+n-1))
		}
		return n
	case modeUntilClose:
		h.msg.BodyBytes += int64(len(b))
		h.msg.End = loc.At(base + len(b) - 1)
		return len(b)
	case modeChunkSize, modeChunkEnd, modeTrailers:
		return d.chunkLine(h, b, loc, base)
	case modeChunkData:
		n := int(min(int64(len(b)), h.bodyLeft))
		h.bodyLeft -= int64(n)
		h.msg.BodyBytes += int64(n)
		if h.bodyLeft == 0 {
			h.mode = modeChunkEnd
		}
		return n
	case modeUpgradeWait:
		return d.afterUpgradeRequest(h, b, loc, base)
	case modeWebSocket:
		if base > 0 {
			// Frames right after the 101 in one segment. Past the
			// handshake every chunk starts at 0 and goes as it came: a
			// wrapper per chunk was an allocation and an indirect call
			// per frame header of a chatty conversation.
			loc = offsetLocator{loc, base}
		}
		d.ws.Data(h.side, b, loc)
		return len(b)
	}
	return len(b) // opaque, broken
}

var methods = []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ", "PROPFIND ", "PROPPATCH ", "MKCOL ", "COPY ", "MOVE ", "LOCK ", "UNLOCK ", "PURGE "}

// startsMessage reports whether b starts a request (client) or a status
// line (server), and whether more bytes are needed to tell.
func startsMessage(side Side, b []byte) (yes, needMore bool) {
	if side == Server {
		return prefixState(b, "HTTP/1.")
	}
	for _, m := range methods {
		if y, more := prefixState(b, m); y || more {
			return y, more
		}
	}
	return false, false
}

func prefixState(b []byte, p string) (yes, needMore bool) {
	if len(b) >= len(p) {
		return string(b[:len(p)]) == p, false
	}
	return false, string(b) == p[:len(b)]
}

// detect decides, on a side's first bytes, whether this is HTTP.
func (d *Decoder) detect(h *half, b []byte, loc evidence.Locator, base int) int {
	probe := append(h.buf, b...)
	yes, more := startsMessage(h.side, probe)
	if yes {
		// The bytes held in buf are the message's first ones: headers
		// go on from there.
		d.conv.Protocol = "http"
		h.mode = modeHeaders
		return 0
	}
	if more {
		if len(h.buf) == 0 {
			h.start = loc.At(base)
		}
		h.buf = append(h.buf, b...)
		return len(b)
	}
	if d.opts.MidStream || d.conv.Partial {
		// Look for the next line that starts a message.
		for i := 0; i+1 < len(probe); i++ {
			if probe[i] == '\n' {
				if y, _ := startsMessage(h.side, probe[i+1:]); y {
					d.conv.Protocol = "http"
					d.conv.Partial = true
					if d.conv.PartialReason == "" {
						d.conv.PartialReason = "the conversation's start was not captured"
					}
					skip := i + 1 - len(h.buf)
					h.buf = h.buf[:0]
					if skip < 0 {
						skip = 0
					}
					h.mode = modeHeaders
					return skip
				}
			}
		}
		h.buf = h.buf[:0]
		return len(b)
	}
	if h.side == Server && len(d.pending) > 0 && d.pending[0].Request.Version == http09 {
		// The answer to a simple request: its bytes are the body, up to
		// the close. Those held to tell are the body's first.
		msg := &Message{Start: loc.At(base), Version: http09, ContentLength: -1, BodyBytes: int64(len(h.buf))}
		if len(h.buf) > 0 {
			msg.Start = h.start
		}
		d.pending[0].Response = msg
		h.msg, h.mode, h.buf = msg, modeUntilClose, h.buf[:0]
		return 0
	}
	if d.conv.Protocol == "" {
		d.conv.Protocol = "not-http"
		d.done = true
	} else {
		d.sides[h.side].mode = modeBroken
		d.conv.Undecodable[h.side] = fmt.Sprintf("bytes %q do not start a message", truncate(string(probe), 24))
	}
	return len(b)
}

// headers collects a start line and headers, then parses them.
func (d *Decoder) headers(h *half, b []byte, loc evidence.Locator, base int) int {
	if len(h.buf) == 0 {
		if h.side == Client {
			// Empty lines before a request line are ignored (RFC 9112
			// section 2.2): a client's extra CRLF after its last message.
			if n := len(b) - len(bytes.TrimLeft(b, "\r\n")); n > 0 {
				return n
			}
		}
		h.start = loc.At(base)
	}
	prev := len(h.buf)
	h.buf = append(h.buf, b...)
	end, sepLen := headerEnd(h.buf, max(0, prev-3))
	// An HTTP/0.9 request is its line alone, no headers follow. Not
	// where decoding picked up mid-stream: a body line that reads
	// "GET /x" would pass for one.
	simple := h.side == Client && !d.conv.Partial
	if end < 0 && simple {
		if i := bytes.IndexByte(h.buf, '\n'); i >= 0 && simpleRequest(string(bytes.TrimSuffix(h.buf[:i], []byte("\r")))) {
			end, sepLen = i+1, 0
		}
	}
	if end < 0 {
		if len(h.buf) > d.opts.MaxHeaderBytes {
			d.conv.Undecodable[h.side] = fmt.Sprintf("headers over %d bytes", d.opts.MaxHeaderBytes)
			h.mode, h.buf = modeBroken, nil
		}
		return len(b)
	}
	used := end + sepLen - prev
	block := h.buf[:end]
	msg := &Message{Start: h.start, HeaderBytes: end + sepLen, ContentLength: -1}
	h.buf = h.buf[:0]
	if problem := parseHead(h.side, block, msg, simple); problem != "" {
		d.conv.Undecodable[h.side] = problem
		h.mode = modeBroken
		return len(b)
	}
	msg.End = loc.At(base + used - 1)
	h.msg = msg
	d.begin(h, msg, loc.At(base+used-1))
	return used
}

// headerEnd finds the blank line ending a header block at or after from:
// "\r\n\r\n", or a bare "\n\n".
func headerEnd(b []byte, from int) (int, int) {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 1, 1
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 1, 2
		}
	}
	return -1, 0
}

// wantedHeaders are the headers kept on messages.
var wantedHeaders = map[string]string{
	"host": "Host", "upgrade": "Upgrade", "connection": "Connection",
	"sec-websocket-key": "Sec-WebSocket-Key", "sec-websocket-accept": "Sec-WebSocket-Accept",
	"sec-websocket-version": "Sec-WebSocket-Version", "sec-websocket-protocol": "Sec-WebSocket-Protocol",
	"sec-websocket-extensions": "Sec-WebSocket-Extensions", "content-length": "Content-Length",
	"transfer-encoding": "Transfer-Encoding", "user-agent": "User-Agent", "x-forwarded-for": "X-Forwarded-For",
	"server": "Server", "location": "Location",
}

const maxHeaderValue = 256

// parseHead parses a start line and headers into msg; simple accepts an
// HTTP/0.9 request line. It reads the block's lines in place: only what
// a message keeps is copied (a copy of the whole block, its lines and
// each lowered header name were a tenth of the bytes an analysis of
// short HTTP conversations allocated).
func parseHead(side Side, block []byte, msg *Message, simple bool) string {
	if bytes.IndexByte(block, '\n') >= 0 && !bytes.Contains(block, []byte("\r\n")) {
		msg.Flags = append(msg.Flags, "bare-lf")
	}
	firstLine, rest := nextLine(block)
	first := string(firstLine)
	if side == Client {
		parts := strings.SplitN(first, " ", 3)
		switch {
		case simple && simpleRequest(first):
			parts = append(parts, http09)
		case len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/"):
			return fmt.Sprintf("bad request line %q", truncate(first, 64))
		}
		msg.Method, msg.URI, msg.Version = keep(parts[0]), strings.Clone(truncate(parts[1], 512)), keep(parts[2])
	} else {
		parts := strings.SplitN(first, " ", 3)
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "HTTP/") {
			return fmt.Sprintf("bad status line %q", truncate(first, 64))
		}
		code, err := strconv.Atoi(parts[1])
		if err != nil || code < 100 || code > 999 {
			return fmt.Sprintf("bad status code %q", truncate(parts[1], 16))
		}
		msg.Version, msg.Status = keep(parts[0]), code
		if len(parts) == 3 {
			msg.Reason = keep(truncate(parts[2], 128))
		}
	}
	var lengths []string
	var lower [64]byte
	for len(rest) > 0 {
		var line []byte
		line, rest = nextLine(rest)
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			msg.Flags = appendOnce(msg.Flags, "obs-fold")
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			msg.Flags = appendOnce(msg.Flags, "header-without-colon")
			continue
		}
		key := lowerName(bytes.TrimSpace(name), &lower)
		value = bytes.TrimSpace(value)
		switch string(key) {
		case "content-length":
			lengths = append(lengths, string(value))
		case "transfer-encoding":
			if bytes.Contains(bytes.ToLower(value), []byte("chunked")) {
				msg.Chunked = true
			}
		}
		if canon, ok := wantedHeaders[string(key)]; ok {
			msg.Headers.add(canon, value, maxHeaderValue)
		}
	}
	if len(lengths) > 0 {
		n, err := strconv.ParseInt(lengths[0], 10, 64)
		for _, l := range lengths[1:] {
			if l != lengths[0] {
				msg.Flags = append(msg.Flags, "conflicting-content-length")
			} else {
				msg.Flags = appendOnce(msg.Flags, "duplicate-content-length")
			}
		}
		if err == nil && n >= 0 {
			msg.ContentLength = n
		} else {
			msg.Flags = append(msg.Flags, "bad-content-length")
		}
		if msg.Chunked {
			// RFC 9112 section 6.3: chunked wins, but a message with both
			// is how request smuggling starts.
			msg.Flags = append(msg.Flags, "content-length-and-chunked")
		}
	}
	return ""
}

// nextLine cuts b's first line, without its line break ("\n", or "\r\n"),
// from the rest.
func nextLine(b []byte) (line, rest []byte) {
	line, rest, found := bytes.Cut(b, []byte("\n"))
	if found {
		line = bytes.TrimSuffix(line, []byte("\r"))
	}
	return line, rest
}

// lowerName returns a header name in lower case, written into buf when it
// is short and ASCII (the map lookup and the switch read it without a
// copy); other names go through bytes.ToLower, Unicode's lowering as
// before.
func lowerName(name []byte, buf *[64]byte) []byte {
	if len(name) > len(buf) {
		return bytes.ToLower(name)
	}
	for i, c := range name {
		if c >= utf8.RuneSelf {
			return bytes.ToLower(name)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(name)]
}

// http09 is the version of a simple request (RFC 1945 section 4.1:
// "GET" and a URI, nothing else) and of its answer, the body alone up to
// the close. Old monitoring probes still send them.
const http09 = "HTTP/0.9"

func simpleRequest(line string) bool {
	uri, ok := strings.CutPrefix(line, "GET ")
	return ok && uri != "" && !strings.ContainsAny(uri, " \t")
}

func appendOnce(flags []string, f string) []string {
	for _, x := range flags {
		if x == f {
			return flags
		}
	}
	return append(flags, f)
}

// common are the start-line words most messages share: kept as these
// constants rather than as copies.
var common = map[string]string{}

func init() {
	for _, w := range []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", http09, "HTTP/1.0", "HTTP/1.1", "OK", "Switching Protocols", "Not Found", "Bad Request", "Forbidden", "Bad Gateway", "Gateway Timeout", "Internal Server Error", "Service Unavailable", "No Content", "Found", "Moved Permanently", "Not Modified"} {
		common[w] = w
	}
}

// keep returns s for a record that outlives the message's header block:
// a substring would keep the whole block (cookies and all) in memory for
// as long as the conversation is kept.
func keep(s string) string {
	if c, ok := common[s]; ok {
		return c
	}
	return strings.Clone(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// begin decides how a message's body is delimited (RFC 9112 section 6.3)
// and pairs responses with requests.
func (d *Decoder) begin(h *half, msg *Message, at evidence.Stamp) {
	if h.side == Client {
		x := &Exchange{Request: msg}
		d.pending = append(d.pending, x)
		if isUpgradeRequest(msg) {
			d.upgrade = &UpgradeHandshake{Request: msg, Protocol: strings.ToLower(msg.Headers.Get("Upgrade"))}
			if key := msg.Headers.Get("Sec-WebSocket-Key"); key != "" {
				d.upgrade.ExpectedAccept = acceptFor(key)
			}
		}
		switch {
		case msg.Chunked:
			h.mode = modeChunkSize
		case msg.ContentLength > 0:
			h.mode, h.bodyLeft = modeBody, msg.ContentLength
		default:
			msg.Complete = true
			d.finishMessage(h, at)
		}
		return
	}
	// A response answers the oldest pending request.
	var x *Exchange
	if len(d.pending) > 0 {
		x = d.pending[0]
	}
	if msg.Status >= 100 && msg.Status < 200 && msg.Status != 101 {
		if x != nil {
			x.Interim = append(x.Interim, msg.Status)
		}
		msg.Complete = true
		h.mode, h.msg = modeHeaders, nil
		return
	}
	if x != nil {
		x.Response = msg
	}
	head := x != nil && x.Request.Method == "HEAD"
	switch {
	case msg.Status == 101:
		msg.Complete = true
		d.switchProtocols(msg)
		return
	case x != nil && x.Request.Method == "CONNECT" && msg.Status/100 == 2:
		msg.Complete = true
		d.finishMessage(h, at)
		d.sides[Client].mode, d.sides[Server].mode = modeOpaque, modeOpaque
		return
	case head || msg.Status == 204 || msg.Status == 304:
		msg.Complete = true
		d.finishMessage(h, at)
	case msg.Chunked:
		h.mode = modeChunkSize
	case msg.ContentLength >= 0:
		if msg.ContentLength == 0 {
			msg.Complete = true
			d.finishMessage(h, at)
		} else {
			h.mode, h.bodyLeft = modeBody, msg.ContentLength
		}
	default:
		h.mode = modeUntilClose
	}
	if d.upgrade != nil && d.upgrade.Response == nil && x != nil && x.Request == d.upgrade.Request {
		// Any final status but 101 refuses the upgrade.
		d.upgrade.Response = msg
		d.upgrade.Verdict = VerdictRejected
		d.upgrade.Waited = msg.Start.Time.Sub(d.upgrade.Request.End.Time)
		d.flushAfterUpgrade()
		d.conv.Upgrades = append(d.conv.Upgrades, *d.upgrade)
		d.upgrade = nil
	}
}

func isUpgradeRequest(m *Message) bool {
	return m.Headers.Get("Upgrade") != "" && strings.Contains(strings.ToLower(m.Headers.Get("Connection")), "upgrade")
}

// acceptFor is Sec-WebSocket-Accept for a key (RFC 6455 section 4.2.2).
func acceptFor(key string) string {
	h := sha1.Sum([]byte(strings.TrimSpace(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// finishMessage ends a message and makes the side ready for the next.
func (d *Decoder) finishMessage(h *half, at evidence.Stamp) {
	m := h.msg
	h.msg = nil
	if h.mode != modeUpgradeWait && h.mode != modeWebSocket && h.mode != modeOpaque {
		h.mode = modeHeaders
	}
	if m == nil {
		return
	}
	m.End = at
	if h.side == Client {
		if d.upgrade != nil && d.upgrade.Request == m && d.upgrade.Response == nil {
			// Until the answer comes, what the client sends next may be
			// WebSocket frames (it should not send any).
			h.mode = modeUpgradeWait
		}
		return
	}
	if len(d.pending) > 0 && d.pending[0].Response == m {
		d.keep(*d.pending[0])
		d.pending = d.pending[1:]
	}
}

// keep stores an exchange: the first half of the cap, then a ring of the
// most recent.
func (d *Decoder) keep(x Exchange) {
	limit := d.opts.MaxExchanges
	if len(d.conv.Exchanges) < limit {
		d.conv.Exchanges = append(d.conv.Exchanges, x)
		return
	}
	half := limit / 2
	copy(d.conv.Exchanges[half:], d.conv.Exchanges[half+1:])
	d.conv.Exchanges[limit-1] = x
	d.conv.ExchangesOmitted++
}

// switchProtocols handles a 101: checks the accept key and hands both
// sides to the websocket decoder (or leaves them undecoded for other
// protocols).
func (d *Decoder) switchProtocols(resp *Message) {
	up := d.upgrade
	if up == nil {
		up = &UpgradeHandshake{Protocol: strings.ToLower(resp.Headers.Get("Upgrade"))}
		if len(d.pending) > 0 {
			// A 101 to a request that did not ask for an upgrade: its key,
			// if it sent one, still says what the accept must be.
			up.Request = d.pending[0].Request
			if key := up.Request.Headers.Get("Sec-WebSocket-Key"); key != "" {
				up.ExpectedAccept = acceptFor(key)
			}
		}
		d.upgrade = up
	}
	up.Response = resp
	if up.Request != nil {
		up.Waited = resp.Start.Time.Sub(up.Request.End.Time)
	}
	up.Accept = resp.Headers.Get("Sec-WebSocket-Accept")
	up.Verdict = VerdictOK
	// The accept is judged against the client's key: with no request
	// captured (the capture began after it) or no key in it, there is
	// nothing to judge it by, and calling it wrong would be a guess.
	if up.Protocol == "websocket" && up.ExpectedAccept != "" && up.Accept != up.ExpectedAccept {
		up.Verdict = VerdictBadAccept
	}
	if len(d.pending) > 0 {
		d.keep(*d.pending[0])
		d.pending = d.pending[1:]
	}
	d.conv.Upgrades = append(d.conv.Upgrades, *up)
	d.upgrade = nil
	if up.Protocol != "websocket" {
		d.sides[Client].mode, d.sides[Server].mode = modeOpaque, modeOpaque
		return
	}
	wsOpts := d.opts.WebSocket
	if ext := resp.Headers.Get("Sec-WebSocket-Extensions"); ext != "" {
		wsOpts.Extensions = true
		wsOpts.Deflate = parseDeflate(ext)
	}
	d.ws = websocket.NewDecoder(wsOpts)
	d.sides[Client].mode, d.sides[Server].mode = modeWebSocket, modeWebSocket
	c := &d.sides[Client]
	if len(c.afterUpgrade) > 0 {
		// The client did not wait for the 101: decode what it sent.
		d.ws.Data(Client, c.afterUpgrade, evidence.At(c.afterStart))
		c.afterUpgrade = nil
	}
}

// parseDeflate reads a negotiated permessage-deflate (RFC 7692 section 7).
func parseDeflate(ext string) *websocket.Deflate {
	for _, e := range strings.Split(ext, ",") {
		params := strings.Split(e, ";")
		if strings.TrimSpace(params[0]) != "permessage-deflate" {
			continue
		}
		df := &websocket.Deflate{}
		for _, p := range params[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			bits, _ := strconv.Atoi(strings.Trim(v, `"`))
			switch k {
			case "client_no_context_takeover":
				df.ClientNoContextTakeover = true
			case "server_no_context_takeover":
				df.ServerNoContextTakeover = true
			case "client_max_window_bits":
				df.ClientMaxWindowBits = bits
			case "server_max_window_bits":
				df.ServerMaxWindowBits = bits
			}
		}
		return df
	}
	return nil
}

// afterUpgradeRequest holds client bytes sent while an upgrade waits for
// its answer, and notes the ones that are WebSocket frames.
func (d *Decoder) afterUpgradeRequest(h *half, b []byte, loc evidence.Locator, base int) int {
	if len(h.afterUpgrade) == 0 {
		h.afterStart = loc.At(base)
	}
	const maxHeld = 64 << 10
	if room := maxHeld - len(h.afterUpgrade); room > 0 {
		h.afterUpgrade = append(h.afterUpgrade, b[:min(room, len(b))]...)
	}
	if d.upgrade != nil {
		// Note each complete frame once: skip the ones already noted.
		buf := h.afterUpgrade
		seen := 0
		for seen < len(d.upgrade.FramesWithoutUpgrade) && len(buf) > 0 {
			_, _, _, size, ok := websocket.ParseFrame(buf)
			if !ok {
				break
			}
			buf = buf[size:]
			seen++
		}
		for len(buf) > 0 {
			op, payload, masked, size, ok := websocket.ParseFrame(buf)
			if !ok {
				break
			}
			at := loc.At(base + max(0, len(b)-len(buf)))
			note := FrameNote{Stamp: at, Opcode: websocket.OpcodeName(op), Masked: masked, Hex: hexBytes(buf[:min(size, 16)])}
			if op == websocket.OpClose {
				note.CloseCode = websocket.CloseCode(payload)
			}
			d.upgrade.FramesWithoutUpgrade = append(d.upgrade.FramesWithoutUpgrade, note)
			buf = buf[size:]
		}
	}
	return len(b)
}

// flushAfterUpgrade re-reads, as HTTP, client bytes held while a refused
// upgrade waited for its answer.
func (d *Decoder) flushAfterUpgrade() {
	c := &d.sides[Client]
	held := c.afterUpgrade
	c.afterUpgrade = nil
	if c.mode == modeUpgradeWait {
		c.mode = modeHeaders
	}
	if len(held) > 0 && len(d.upgrade.FramesWithoutUpgrade) == 0 {
		d.Data(Client, held, evidence.At(c.afterStart))
	}
}

// finishUnanswered gives an upgrade that never got an answer its verdict.
func (d *Decoder) finishUnanswered() {
	up := d.upgrade
	d.upgrade = nil
	up.Verdict = VerdictNoResponse
	gaveUp := d.last.Time
	if len(up.FramesWithoutUpgrade) > 0 {
		up.Verdict = VerdictNotUpgradedButFrames
		gaveUp = up.FramesWithoutUpgrade[0].Time
	}
	if up.Request != nil && !up.Request.End.Time.IsZero() {
		up.Waited = gaveUp.Sub(up.Request.End.Time)
	}
	d.conv.Upgrades = append(d.conv.Upgrades, *up)
}

func hexBytes(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}

// chunkLine handles the line-based parts of chunked encoding (RFC 9112
// section 7.1): chunk sizes, the CRLF after data, trailers.
func (d *Decoder) chunkLine(h *half, b []byte, loc evidence.Locator, base int) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(h.buf)+len(b) > 4096 {
			h.msg.Flags = appendOnce(h.msg.Flags, "bad-chunk-size")
			h.mode = modeBroken
			d.conv.Undecodable[h.side] = "a chunk-size line over 4 KiB"
			return len(b)
		}
		h.buf = append(h.buf, b...)
		return len(b)
	}
	line := strings.TrimRight(string(append(h.buf, b[:i]...)), "\r")
	h.buf = h.buf[:0]
	used := i + 1
	h.msg.BodyBytes += int64(len(line)) + 2
	switch h.mode {
	case modeChunkEnd:
		h.mode = modeChunkSize
	case modeTrailers:
		if line == "" {
			h.msg.Complete = true
			d.finishMessage(h, loc.At(base+used-1))
		}
	case modeChunkSize:
		sizeText, _, _ := strings.Cut(line, ";")
		size, err := strconv.ParseInt(strings.TrimSpace(sizeText), 16, 64)
		switch {
		case err != nil || size < 0:
			h.msg.Flags = appendOnce(h.msg.Flags, "bad-chunk-size")
			h.mode = modeBroken
			d.conv.Undecodable[h.side] = fmt.Sprintf("bad chunk size %q", truncate(line, 32))
		case size == 0:
			h.mode = modeTrailers
		default:
			h.mode, h.bodyLeft = modeChunkData, size
		}
	}
	return used
}

// offsetLocator shifts a locator to a sub-slice starting at base.
type offsetLocator struct {
	loc  evidence.Locator
	base int
}

func (o offsetLocator) At(offset int) evidence.Stamp { return o.loc.At(o.base + offset) }
