package websocket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/klauspost/compress/flate"

	"wiremortem/evidence"
)

// Decoder decodes both directions of one WebSocket conversation.
type Decoder struct {
	opts Options
	dirs [2]direction
	sum  Summary
	// ring is where the next message goes once Messages is full: the
	// first half of the cap stays, the rest is a ring of the most recent,
	// put in order by Summary.
	ring int
	// shared is set while the last summary shares the lists.
	shared bool
	// ringBufs[i] is the payload of the ring's slot i (see keepMessage).
	ringBufs [][]byte
	// frames counts whole frames by side and opcode; Summary turns it
	// into Summary.Frames (a map lookup with a built key per frame cost
	// more than the rest of a small frame's decoding).
	frames [2][16]int64
}

// direction is one side's frame parser state.
type direction struct {
	side Side
	// header collects a frame header split across chunks.
	head  [14]byte
	nhead int
	// Current frame.
	inFrame   bool
	fin       bool
	rsv       uint8
	opcode    uint8
	masked    bool
	mask      [4]byte
	length    int64
	remaining int64
	offset    int64 // payload bytes of the frame seen so far (unmask index)
	start     evidence.Stamp
	control   []byte // control frame payload (at most 125 bytes kept)
	// Current message (data frames): msg points at cur while one is open;
	// spare is a payload buffer free for the next one.
	msg        *Message
	cur        Message
	spare      []byte
	compressed []byte // deflated payload held for inflation
	tooBig     bool
	// dict is the inflater's context (the last window of output) when
	// context takeover is on; fullContext counts the messages still to be
	// inflated with all of it at once (see inflateWith).
	dict        []byte
	fullContext int
	broken      string // why the rest of this side cannot be decoded
	resync      bool   // after a gap: looking for a plausible frame header
	skipped     int
}

// NewDecoder returns a decoder.
func NewDecoder(opts Options) *Decoder {
	opts.defaults()
	d := &Decoder{opts: opts}
	d.dirs[Client].side, d.dirs[Server].side = Client, Server
	d.sum.Frames = map[string]int64{}
	d.sum.Messages = []Message{}
	d.sum.Closes = []Close{}
	return d
}

// Summary returns what was decoded so far; messages still being assembled
// are included as they are.
func (d *Decoder) Summary() *Summary {
	d.own()
	for i := range d.dirs {
		if d.dirs[i].msg != nil {
			d.keepCurrent(&d.dirs[i])
		}
	}
	for side := range d.frames {
		for op, n := range d.frames[side] {
			if n > 0 {
				d.sum.Frames[Side(side).String()+" "+OpcodeName(uint8(op))] = n
			}
		}
	}
	if d.ring != 0 {
		tail := d.sum.Messages[d.opts.MaxMessages/2:]
		ordered := append(slices.Clone(tail[d.ring:]), tail[:d.ring]...)
		copy(tail, ordered)
		d.ring = 0
	}
	// A copy: the caller keeps the summary after the conversation ends,
	// and a pointer into the decoder would keep the decoder with it (its
	// inflate windows, 32 KiB a direction, and frame buffers). Its lists
	// are shared until the decoder writes again (see own).
	sum := d.sum
	d.shared = true
	return &sum
}

// own takes back the lists and payloads Summary shared, copying them,
// before anything is written in place (the ring, answers to closes and
// pings, frame counts): a summary taken mid-conversation stays as it was,
// and the usual one, at the end, costs no copy. Called at every entry
// point; small enough to be inlined there, so that the common case is
// one test.
func (d *Decoder) own() {
	if d.shared {
		d.copyShared()
	}
}

func (d *Decoder) copyShared() {
	d.shared = false
	d.sum.Frames = maps.Clone(d.sum.Frames)
	d.sum.Messages = slices.Clone(d.sum.Messages)
	for i := range d.sum.Messages {
		if p := d.sum.Messages[i].Payload; p != nil {
			d.sum.Messages[i].Payload = slices.Clone(p)
		}
	}
	d.sum.Closes = slices.Clone(d.sum.Closes)
	d.sum.Pings = slices.Clone(d.sum.Pings)
	if d.ringBufs != nil {
		// Summary may have put the ring in order: the buffers follow.
		tail := d.sum.Messages[d.opts.MaxMessages/2:]
		for i := range tail {
			d.ringBufs[i] = tail[i].Payload
		}
	}
}

// Data decodes the next in-order bytes sent by side.
func (d *Decoder) Data(from Side, b []byte, loc evidence.Locator) {
	d.own()
	dir := &d.dirs[from]
	if dir.broken != "" {
		return
	}
	off := 0
	for off < len(b) && dir.broken == "" {
		if dir.resync {
			n, ok := d.resync(dir, b[off:], loc, off)
			off += n
			if !ok {
				continue
			}
		}
		if !dir.inFrame {
			n := d.readHeader(dir, b[off:], loc, off)
			off += n
			continue
		}
		n := int(min(int64(len(b)-off), dir.remaining))
		d.payload(dir, b[off:off+n])
		dir.remaining -= int64(n)
		off += n
		if dir.remaining == 0 {
			d.endFrame(dir, loc.At(off-1))
		}
	}
}

// Gap says bytes of side were lost: the frame being read cannot be
// finished; decoding resumes at the next plausible frame header.
func (d *Decoder) Gap(from Side, missing int, at evidence.Stamp) {
	d.own()
	dir := &d.dirs[from]
	if dir.broken != "" {
		return
	}
	if dir.msg != nil {
		dir.msg.Error = fmt.Sprintf("%d bytes missing from the capture", missing)
		d.keepCurrent(dir)
	}
	dir.inFrame, dir.nhead, dir.resync, dir.skipped = false, 0, true, 0
	dir.compressed, dir.dict = nil, nil
	if d.opts.Deflate != nil && !noContextTakeover(d.opts.Deflate, from) {
		// The inflater's context went with the lost bytes.
		d.violation(dir, at, "undecodable", "a gap broke the compression context; later compressed messages cannot be inflated")
	}
}

// End says side sent everything it will.
func (d *Decoder) End(from Side, at evidence.Stamp) {
	d.own()
	dir := &d.dirs[from]
	if dir.inFrame || dir.nhead > 0 {
		d.violation(dir, at, "truncated-frame", fmt.Sprintf("the stream ended %d bytes into a frame", dir.offset+int64(dir.nhead)))
		dir.inFrame, dir.nhead = false, 0
	}
	// Nothing more comes from this side: its inflate window and buffers
	// go now, not when the conversation is let go, so a closed
	// conversation that lingers costs no window.
	dir.dict, dir.compressed, dir.control = nil, nil, nil
}

const maxResyncScan = 64 << 10

// resync looks for a plausible frame header after a gap. It returns how
// many bytes it consumed and whether decoding may resume there.
func (d *Decoder) resync(dir *direction, b []byte, loc evidence.Locator, base int) (int, bool) {
	for i := 0; i < len(b); i++ {
		if d.plausibleHeader(dir, b[i:]) {
			dir.resync = false
			d.violation(dir, loc.At(base+i), "resynchronised", fmt.Sprintf("decoding resumed %d bytes after the gap", dir.skipped+i))
			return i, true
		}
	}
	dir.skipped += len(b)
	if dir.skipped > maxResyncScan {
		dir.broken = "no frame header found within 64 KiB after a gap"
		d.sum.Undecodable[dir.side] = dir.broken
		d.violation(dir, loc.At(base+len(b)-1), "undecodable", dir.broken)
	}
	return len(b), false
}

// plausibleHeader reports whether b starts with a header this side could
// send: a known opcode, the right mask bit, RSV only with an extension, a
// sane length, short unfragmented control frames.
func (d *Decoder) plausibleHeader(dir *direction, b []byte) bool {
	if len(b) < 2 {
		return false
	}
	op, rsv := b[0]&0x0f, (b[0]>>4)&0x7
	masked, l7 := b[1]&0x80 != 0, int64(b[1]&0x7f)
	if rsv != 0 && !d.opts.Extensions {
		return false
	}
	if masked != (dir.side == Client) {
		return false
	}
	switch op {
	case OpText, OpBinary, OpContinuation:
		return l7 < 127
	case OpClose, OpPing, OpPong:
		return b[0]&0x80 != 0 && l7 <= 125
	}
	return false
}

// readHeader consumes header bytes; once the header is whole it starts the
// frame.
func (d *Decoder) readHeader(dir *direction, b []byte, loc evidence.Locator, base int) int {
	if dir.nhead == 0 && len(b) > 0 {
		dir.start = loc.At(base)
	}
	need := 2
	if dir.nhead >= 2 {
		need = headerLen(dir.head[1])
	}
	n := 0
	for dir.nhead < need && n < len(b) {
		dir.head[dir.nhead] = b[n]
		dir.nhead++
		n++
		if dir.nhead == 2 {
			need = headerLen(dir.head[1])
		}
	}
	if dir.nhead < need {
		return n
	}
	d.startFrame(dir)
	if dir.inFrame && dir.remaining == 0 {
		d.endFrame(dir, loc.At(base+n-1))
	}
	return n
}

func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// startFrame interprets a complete header (RFC 6455 section 5.2).
func (d *Decoder) startFrame(dir *direction) {
	h := dir.head[:dir.nhead]
	dir.nhead = 0
	dir.fin = h[0]&0x80 != 0
	dir.rsv = (h[0] >> 4) & 0x7
	dir.opcode = h[0] & 0x0f
	dir.masked = h[1]&0x80 != 0
	l7 := int64(h[1] & 0x7f)
	p := 2
	switch l7 {
	case 126:
		dir.length = int64(binary.BigEndian.Uint16(h[2:4]))
		if dir.length < 126 {
			d.violation(dir, dir.start, "non-minimal-length", fmt.Sprintf("length %d in the 16-bit form", dir.length))
		}
		p = 4
	case 127:
		v := binary.BigEndian.Uint64(h[2:10])
		if v>>63 != 0 {
			d.violation(dir, dir.start, "length-top-bit", "the 64-bit length has its most significant bit set")
			v &^= 1 << 63
		}
		dir.length = int64(v)
		if dir.length <= 0xffff {
			d.violation(dir, dir.start, "non-minimal-length", fmt.Sprintf("length %d in the 64-bit form", dir.length))
		}
		p = 10
	default:
		dir.length = l7
	}
	if dir.masked {
		copy(dir.mask[:], h[p:p+4])
	}
	dir.remaining, dir.offset, dir.inFrame = dir.length, 0, true
	dir.control = dir.control[:0]
	name := OpcodeName(dir.opcode)
	if dir.side == Client && !dir.masked {
		d.violation(dir, dir.start, "unmasked-client-frame", "RFC 6455 section 5.1: a client masks every frame")
	}
	if dir.side == Server && dir.masked {
		d.violation(dir, dir.start, "masked-server-frame", "RFC 6455 section 5.1: a server never masks")
	}
	isControl := dir.opcode&0x8 != 0
	switch {
	case dir.opcode > OpBinary && dir.opcode < OpClose, dir.opcode > OpPong:
		d.violation(dir, dir.start, "reserved-opcode", name)
	case isControl && dir.length > 125:
		d.violation(dir, dir.start, "control-frame-too-long", fmt.Sprintf("%s frame of %d bytes (at most 125)", name, dir.length))
	case isControl && !dir.fin:
		d.violation(dir, dir.start, "fragmented-control-frame", name+" frame without FIN")
	}
	rsv1Allowed := d.opts.Deflate != nil && (dir.opcode == OpText || dir.opcode == OpBinary)
	if dir.rsv != 0 && !(dir.rsv == 4 && rsv1Allowed) && !d.opts.Extensions {
		d.violation(dir, dir.start, "rsv-without-extension", fmt.Sprintf("RSV bits %03b with no extension negotiated", dir.rsv))
	}
	switch dir.opcode {
	case OpText, OpBinary:
		if dir.msg != nil {
			d.violation(dir, dir.start, "new-message-inside-fragmented", "a new data frame before the fragmented message's last frame")
			d.keepCurrent(dir)
		}
		d.openMessage(dir, Message{From: dir.side, Opcode: name, Start: dir.start, Compressed: dir.rsv&4 != 0 && d.opts.Deflate != nil})
		dir.compressed, dir.tooBig = dir.compressed[:0], false
	case OpContinuation:
		if dir.msg == nil {
			d.violation(dir, dir.start, "unexpected-continuation", "a continuation frame with no message to continue")
			d.openMessage(dir, Message{From: dir.side, Opcode: name, Start: dir.start})
		}
	}
	if dir.msg != nil && !isControl {
		dir.msg.Frames++
	}
}

// payload takes a chunk of the current frame's payload.
func (d *Decoder) payload(dir *direction, b []byte) {
	if len(b) == 0 {
		return
	}
	isControl := dir.opcode&0x8 != 0
	if isControl {
		room := 125 - len(dir.control)
		if room > 0 {
			dir.control = append(dir.control, b[:min(room, len(b))]...)
			if dir.masked {
				unmask(dir.control[len(dir.control)-min(room, len(b)):], dir.mask, dir.offset)
			}
		}
		dir.offset += int64(len(b))
		return
	}
	m := dir.msg
	if m == nil {
		dir.offset += int64(len(b))
		return
	}
	m.Length += int64(len(b))
	if m.Compressed {
		if len(dir.compressed)+len(b) > d.opts.MaxCompressedMessage {
			dir.tooBig = true
		} else {
			start := len(dir.compressed)
			dir.compressed = append(dir.compressed, b...)
			if dir.masked {
				unmask(dir.compressed[start:], dir.mask, dir.offset)
			}
		}
	} else if room := d.opts.PayloadBytes - len(m.Payload); room > 0 {
		start := len(m.Payload)
		add := b[:min(room, len(b))]
		if cap(m.Payload)-start < len(add) && len(d.sum.Messages) == d.opts.MaxMessages {
			// In the ring, buffers are lent from message to message:
			// grown once to the most a payload keeps, one never grows
			// again (an allocation every few messages otherwise).
			m.Payload = append(make([]byte, 0, d.opts.PayloadBytes), m.Payload...)
		}
		m.Payload = append(m.Payload, add...)
		if dir.masked {
			unmask(m.Payload[start:], dir.mask, dir.offset)
		}
		if len(b) > room {
			m.PayloadTruncated = true
		}
	} else {
		m.PayloadTruncated = true
	}
	dir.offset += int64(len(b))
}

// unmask XORs b, which starts offset bytes into a frame's payload, with
// the frame's masking key (RFC 6455 section 5.3): eight bytes at a time,
// the key repeated and turned to start where b does.
func unmask(b []byte, key [4]byte, offset int64) {
	var k [8]byte
	for i := range k {
		k[i] = key[(offset+int64(i))&3]
	}
	k8 := binary.LittleEndian.Uint64(k[:])
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k8)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&7]
	}
}

// endFrame finishes a frame.
func (d *Decoder) endFrame(dir *direction, at evidence.Stamp) {
	dir.inFrame = false
	// Frames count when whole: one cut by the end of the stream is a
	// truncated-frame violation instead.
	d.frames[dir.side][dir.opcode&15]++
	switch dir.opcode {
	case OpClose:
		d.closeFrame(dir, at)
	case OpPing:
		d.ping(dir)
	case OpPong:
		d.pong(dir, at)
	case OpText, OpBinary, OpContinuation:
		if dir.msg != nil && dir.fin {
			m := dir.msg
			m.End = at
			if m.Compressed {
				d.inflate(dir, m)
			}
			if m.Opcode == "text" && !m.Compressed && !m.PayloadTruncated && !utf8.Valid(m.Payload) {
				d.violation(dir, m.Start, "bad-text-utf8", "a text message that is not valid UTF-8")
			}
			d.keepCurrent(dir)
		}
	}
}

// closeFrame reads a Close frame's code and reason (RFC 6455 section
// 5.5.1 and 7.4).
func (d *Decoder) closeFrame(dir *direction, at evidence.Stamp) {
	c := Close{From: dir.side, Stamp: dir.start}
	body := dir.control
	switch {
	case len(body) == 1:
		d.violation(dir, dir.start, "close-payload-1-byte", "a Close body must be empty or hold a 2-byte code")
	case len(body) >= 2:
		c.Code = int(binary.BigEndian.Uint16(body[:2]))
		reason := body[2:]
		if !utf8.Valid(reason) {
			d.violation(dir, dir.start, "bad-close-reason-utf8", fmt.Sprintf("close reason %q is not UTF-8", reason))
		}
		c.Reason = string(bytes.ToValidUTF8(reason, []byte("\uFFFD")))
		if !validCloseCode(c.Code) {
			d.violation(dir, dir.start, "bad-close-code", fmt.Sprintf("close code %d may not be sent (RFC 6455 section 7.4)", c.Code))
		}
	}
	for i := range d.sum.Closes {
		if d.sum.Closes[i].From != dir.side {
			d.sum.Closes[i].Answered = true
		}
	}
	if d.sum.ClosedFirst == "" {
		d.sum.ClosedFirst = dir.side.String()
	}
	if len(d.sum.Closes) < 8 {
		d.sum.Closes = append(d.sum.Closes, c)
	}
}

// validCloseCode follows RFC 6455 section 7.4: 1000-1003, 1007-1011 (and
// 1012-1014 registered later) and 3000-4999 may be sent; 1005, 1006, 1015
// and the rest of 0-2999 may not.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

const maxPings = 64

func (d *Decoder) ping(dir *direction) {
	if len(d.sum.Pings) >= maxPings {
		d.sum.PingsOmitted++
		return
	}
	d.sum.Pings = append(d.sum.Pings, PingPong{From: dir.side, Ping: dir.start})
}

// pong answers the oldest unanswered ping from the other side.
func (d *Decoder) pong(dir *direction, at evidence.Stamp) {
	for i := range d.sum.Pings {
		p := &d.sum.Pings[i]
		if p.From != dir.side && p.Pong == nil {
			pong := dir.start
			p.Pong = &pong
			p.RTT = pong.Time.Sub(p.Ping.Time)
			return
		}
	}
}

// inflate undoes permessage-deflate on a complete message (RFC 7692
// section 7.2.2: append 00 00 ff ff, inflate; with context takeover the
// previous output is the dictionary of the next message).
func (d *Decoder) inflate(dir *direction, m *Message) {
	if dir.tooBig {
		m.Error = fmt.Sprintf("compressed message over %d bytes: not inflated", d.opts.MaxCompressedMessage)
		d.violation(dir, m.Start, "message-too-large", m.Error)
		dir.dict = nil // the context is lost with it
		return
	}
	in := append(dir.compressed, 0x00, 0x00, 0xff, 0xff)
	window := 1 << windowBits(d.opts.Deflate, dir.side)
	scratch := getScratch()
	defer putScratch(scratch)
	tryShort := dir.fullContext == 0
	if !tryShort {
		dir.fullContext--
	}
	n, reachedFar, err := inflateWith(scratch, in, dir.dict[max(0, len(dir.dict)-window):], d.opts.MaxDecompressed, tryShort)
	if reachedFar {
		// This side's messages refer further back: the next few are
		// inflated with the whole window at once.
		dir.fullContext = 8
	}
	out := *scratch
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		m.Error = "inflate: " + err.Error()
		d.violation(dir, m.Start, "decompression-error", m.Error)
		dir.dict = nil
		return
	}
	if n > d.opts.MaxDecompressed {
		m.Error = fmt.Sprintf("inflates to over %d bytes: stopped (a deflate bomb?)", d.opts.MaxDecompressed)
		d.violation(dir, m.Start, "decompressed-too-large", m.Error)
		dir.dict = nil
		return
	}
	m.Decompressed = n
	p := out
	m.Payload = append(m.Payload[:0], p[:min(len(p), d.opts.PayloadBytes)]...)
	m.PayloadTruncated = len(p) > d.opts.PayloadBytes
	if m.Opcode == "text" && !utf8.Valid(p) {
		d.violation(dir, m.Start, "bad-text-utf8", "a text message that is not valid UTF-8 once inflated")
	}
	if noContextTakeover(d.opts.Deflate, dir.side) {
		dir.dict = nil
		return
	}
	dir.dict = slideWindow(dir.dict, p, window)
}

// scratches are the buffers messages inflate into, shared by every
// decoder so that no live conversation holds one; one that grew past
// maxScratch (a big message) is dropped rather than pooled.
var scratches sync.Pool

const maxScratch = 64 << 10

func getScratch() *[]byte {
	if b, ok := scratches.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

func putScratch(b *[]byte) {
	if cap(*b) <= maxScratch {
		scratches.Put(b)
	}
}

// slideWindow appends p to the history dict and returns it; the inflate
// window is its last window bytes. Older bytes are dropped only when the
// buffer is full, and it keeps a quarter of a window of room beyond the
// window: each byte is moved a few times, not once per message (a chatty
// conversation's messages are far smaller than the 32 KiB window, which
// a shift per message moved whole). While it fills it grows twice: to a
// few KiB, then to its full size (doubling from a message's size, each
// copy into fresh memory, cost more than inflating).
func slideWindow(dict, p []byte, window int) []byte {
	if len(p) >= window {
		return append(dict[:0], p[len(p)-window:]...)
	}
	room := window + window/4
	if keep := window - len(p); len(dict)+len(p) > cap(dict) {
		switch {
		case len(dict) > keep && cap(dict) >= room:
			dict = dict[:copy(dict, dict[len(dict)-keep:])]
		case len(dict) > keep:
			grown := make([]byte, keep, room)
			copy(grown, dict[len(dict)-keep:])
			dict = grown
		default:
			size := room
			if len(dict)+len(p) <= firstHistory {
				size = min(firstHistory, room)
			}
			grown := make([]byte, len(dict), size)
			copy(grown, dict)
			dict = grown
		}
	}
	return append(dict, p...)
}

// firstHistory is the size of a direction's first inflate history buffer.
const firstHistory = 4 << 10

// inflater is a pooled decompressor: its 32 KiB window and tables are
// reset for each message instead of allocated, so inflating costs no
// memory per conversation beyond the message itself.
type inflater struct {
	src bytes.Reader
	r   io.ReadCloser
}

var inflaters sync.Pool

func getInflater(in, dict []byte) *inflater {
	f, _ := inflaters.Get().(*inflater)
	if f == nil {
		f = &inflater{}
		f.src.Reset(in)
		f.r = flate.NewReaderDict(&f.src, dict)
		return f
	}
	f.src.Reset(in)
	f.r.(flate.Resetter).Reset(&f.src, dict)
	return f
}

// shortContext is how much of the context (the previous messages' output)
// inflating a message tries first: copying the whole 32 KiB window into
// the inflater for each message cost more than inflating a chat message,
// whose back-references seldom reach past the last few messages.
const shortContext = 4 << 10

// inflateWith inflates in, a message's deflated bytes with the sync
// marker, into *out (at most limit+1 bytes) with context as the window
// before it. With tryShort it first gives the inflater only the last
// shortContext bytes: a back-reference past them is an error (the inflater
// checks every distance against the history it holds), and only then is
// the message inflated again with the whole context, so the output is the
// same either way; reachedFar says that happened.
func inflateWith(out *[]byte, in, context []byte, limit int64, tryShort bool) (n int64, reachedFar bool, err error) {
	if tryShort && len(context) > shortContext {
		f := getInflater(in, context[len(context)-shortContext:])
		n, err := readAll(out, io.LimitReader(f.r, limit+1))
		inflaters.Put(f)
		if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
			return n, false, err
		}
		*out, reachedFar = (*out)[:0], true
	}
	f := getInflater(in, context)
	defer inflaters.Put(f)
	n, err = readAll(out, io.LimitReader(f.r, limit+1))
	return n, reachedFar, err
}

// readAll appends r's bytes to *out until EOF or an error, and returns how
// many it read.
func readAll(out *[]byte, r io.Reader) (int64, error) {
	var n int64
	for {
		if len(*out) == cap(*out) {
			*out = append(*out, 0)[:len(*out)]
		}
		buf := *out
		k, err := r.Read(buf[len(buf):cap(buf)])
		*out = buf[:len(buf)+k]
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func noContextTakeover(df *Deflate, side Side) bool {
	if df == nil {
		return true
	}
	if side == Client {
		return df.ClientNoContextTakeover
	}
	return df.ServerNoContextTakeover
}

func windowBits(df *Deflate, side Side) int {
	bits := df.ServerMaxWindowBits
	if side == Client {
		bits = df.ClientMaxWindowBits
	}
	if bits < 8 || bits > 15 {
		return 15
	}
	return bits
}

// openMessage starts the direction's current message, its payload
// written into the spare buffer when there is one.
func (d *Decoder) openMessage(dir *direction, m Message) {
	m.Payload, dir.spare = dir.spare, nil
	dir.cur = m
	dir.msg = &dir.cur
}

// keepCurrent stores the direction's current message and closes it; the
// next message's payload goes into the buffer keepMessage gives back.
func (d *Decoder) keepCurrent(dir *direction) {
	dir.spare = d.keepMessage(&dir.cur)
	dir.msg = nil
}

// keepMessage stores a message: the first half of the cap, then a ring of
// the most recent. It returns a payload buffer free for the next message:
// m's own when the message stored holds none of it, the buffer of the
// message it replaced in the ring otherwise.
func (d *Decoder) keepMessage(m *Message) []byte {
	payload := m.Payload
	if len(payload) == 0 {
		payload = nil // as a message that never had a payload byte
	}
	limit := d.opts.MaxMessages
	if limit == 0 {
		d.sum.MessagesOmitted++
		return m.Payload[:0]
	}
	if len(d.sum.Messages) < limit {
		if len(d.sum.Messages) == cap(d.sum.Messages) {
			// Room for a few, then for all: a conversation past a few
			// messages usually goes on past the cap, and each doubling
			// would copy the kilobytes kept so far.
			size := limit
			if len(d.sum.Messages) == 0 {
				size = min(limit, 4)
			}
			d.sum.Messages = slices.Grow(d.sum.Messages, size-len(d.sum.Messages))
		}
		d.sum.Messages = append(d.sum.Messages, *m)
		d.sum.Messages[len(d.sum.Messages)-1].Payload = payload
		if payload == nil {
			return m.Payload[:0]
		}
		return nil
	}
	// A ring, not a shift: a long conversation's every message would
	// otherwise move the whole tail (kilobytes). The message takes its
	// buffer with it, and the one it replaces lends its own to the next
	// message. That buffer is found in ringBufs, not in the slot: the slot
	// is only written, and a read of it would wait for memory (with
	// thousands of conversations live it is never in the cache), while
	// ringBufs keeps a few slots' buffers to a cache line.
	tail := d.sum.Messages[limit/2:]
	if d.ringBufs == nil {
		d.ringBufs = make([][]byte, len(tail))
		for i := range tail {
			d.ringBufs[i] = tail[i].Payload
		}
	}
	free := d.ringBufs[d.ring]
	d.ringBufs[d.ring] = payload
	slot := &tail[d.ring]
	*slot = *m
	slot.Payload = payload
	if payload == nil {
		free = m.Payload
	}
	d.ring = (d.ring + 1) % len(tail)
	d.sum.MessagesOmitted++
	return free[:0]
}

const maxViolations = 64

func (d *Decoder) violation(dir *direction, at evidence.Stamp, kind, detail string) {
	if len(d.sum.Violations) >= maxViolations {
		d.sum.ViolationsOmitted++
		return
	}
	d.sum.Violations = append(d.sum.Violations, Violation{Stamp: at, From: dir.side, Kind: kind, Detail: detail})
}

// ParseFrame decodes one complete frame from the start of b, for callers
// that need to know whether some bytes are a WebSocket frame (the client's
// Close on a connection that was never upgraded, seed 000). It returns the
// opcode, the unmasked payload (at most 125 bytes for control frames),
// whether the frame was masked, and the frame's total length, or ok false.
func ParseFrame(b []byte) (opcode uint8, payload []byte, masked bool, size int, ok bool) {
	if len(b) < 2 {
		return 0, nil, false, 0, false
	}
	hl := headerLen(b[1])
	if len(b) < hl {
		return 0, nil, false, 0, false
	}
	opcode = b[0] & 0x0f
	if opcode > OpBinary && opcode < OpClose || opcode > OpPong || (b[0]>>4)&0x7 != 0 {
		return 0, nil, false, 0, false
	}
	var length int64
	switch l7 := b[1] & 0x7f; l7 {
	case 126:
		length = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		length = int64(binary.BigEndian.Uint64(b[2:10]) &^ (1 << 63))
	default:
		length = int64(l7)
	}
	if opcode&0x8 != 0 && (length > 125 || b[0]&0x80 == 0) {
		return 0, nil, false, 0, false
	}
	if int64(len(b)-hl) < length {
		return 0, nil, false, 0, false
	}
	masked = b[1]&0x80 != 0
	n := int(min(length, 125))
	payload = append([]byte(nil), b[hl:hl+n]...)
	if masked {
		var key [4]byte
		copy(key[:], b[hl-4:hl])
		unmask(payload, key, 0)
	}
	return opcode, payload, masked, hl + int(length), true
}

// CloseCode reads the status code of a Close frame's payload, 0 if none.
func CloseCode(payload []byte) int {
	if len(payload) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(payload[:2]))
}
