package websocket

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
	"weak"

	"wiremortem/evidence"
	"wiremortem/internal/testenv"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// frame builds one frame (RFC 6455 section 5.2); a non-nil mask masks it.
func frame(fin bool, rsv, op byte, payload []byte, mask []byte) []byte {
	b0 := rsv<<4 | op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	m := byte(0)
	if mask != nil {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, m|byte(n))
	case n <= 0xffff:
		out = append(out, m|126, byte(n>>8), byte(n))
	default:
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	p := append([]byte(nil), payload...)
	if mask != nil {
		out = append(out, mask...)
		for i := range p {
			p[i] ^= mask[i%4]
		}
	}
	return append(out, p...)
}

var key = []byte{1, 2, 3, 4}

// feed pushes a stream to the decoder split into chunks of n bytes.
func feed(d *Decoder, from Side, stream []byte, n int) {
	for i := 0; i < len(stream); i += n {
		end := min(i+n, len(stream))
		d.Data(from, stream[i:end], evidence.At{Time: t0.Add(time.Duration(i) * time.Millisecond), Ref: evidence.Ref{Source: "t", Packet: int64(i + 1)}})
	}
}

func kinds(s *Summary) string {
	var k []string
	for _, v := range s.Violations {
		k = append(k, v.Kind)
	}
	return strings.Join(k, ",")
}

// TestSplitAtEveryByte decodes the same conversation with the stream cut
// into chunks of every size from 1 byte up: frame headers split anywhere
// must not change the result.
func TestSplitAtEveryByte(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)    // 16-bit length
	huge := bytes.Repeat([]byte("y"), 70_000) // 64-bit length
	client := append(frame(true, 0, OpText, []byte("hello"), key), frame(true, 0, OpBinary, long, key)...)
	client = append(client, frame(false, 0, OpText, []byte("frag-"), key)...)
	client = append(client, frame(true, 0, OpPing, []byte("p"), key)...) // a ping between fragments
	client = append(client, frame(true, 0, OpContinuation, []byte("ment"), key)...)
	client = append(client, frame(true, 0, OpClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}, key)...)
	server := append(frame(true, 0, OpBinary, huge, nil), frame(true, 0, OpPong, []byte("p"), nil)...)
	server = append(server, frame(true, 0, OpClose, []byte{0x03, 0xe8}, nil)...)
	for _, n := range []int{1, 2, 3, 5, 7, 13, 100, 1 << 20} {
		d := NewDecoder(Options{})
		feed(d, Client, client, n)
		feed(d, Server, server, n)
		s := d.Summary()
		if v := kinds(s); v != "" {
			t.Fatalf("chunk %d: violations %s", n, v)
		}
		if len(s.Messages) != 4 {
			t.Fatalf("chunk %d: %d messages, want 4: %+v", n, len(s.Messages), s.Messages)
		}
		m := s.Messages
		if string(m[0].Payload) != "hello" || m[1].Length != 300 || len(m[1].Payload) != 256 || !m[1].PayloadTruncated {
			t.Errorf("chunk %d: first messages wrong: %+v", n, m[:2])
		}
		if m[2].Frames != 2 || string(m[2].Payload) != "frag-ment" {
			t.Errorf("chunk %d: fragmented message = %q in %d frames", n, m[2].Payload, m[2].Frames)
		}
		if m[3].From != Server || m[3].Length != 70_000 {
			t.Errorf("chunk %d: 64-bit-length message %+v", n, m[3])
		}
		if len(s.Closes) != 2 || s.Closes[0].Code != 1000 || s.Closes[0].Reason != "bye" || !s.Closes[0].Answered || s.ClosedFirst != "client" {
			t.Errorf("chunk %d: closes %+v", n, s.Closes)
		}
		if len(s.Pings) != 1 || s.Pings[0].Pong == nil {
			t.Errorf("chunk %d: ping not paired with its pong: %+v", n, s.Pings)
		}
	}
}

func TestViolations(t *testing.T) {
	tests := []struct {
		name   string
		from   Side
		stream []byte
		want   string
	}{
		{"unmasked client frame", Client, frame(true, 0, OpText, []byte("a"), nil), "unmasked-client-frame"},
		{"masked server frame", Server, frame(true, 0, OpText, []byte("a"), key), "masked-server-frame"},
		{"reserved opcode", Server, frame(true, 0, 0x3, nil, nil), "reserved-opcode"},
		{"rsv without extension", Server, frame(true, 2, OpText, []byte("a"), nil), "rsv-without-extension"},
		{"long control frame", Server, frame(true, 0, OpPing, bytes.Repeat([]byte("a"), 126), nil), "control-frame-too-long"},
		{"fragmented control", Server, frame(false, 0, OpPing, nil, nil), "fragmented-control-frame"},
		{"bad close reason", Server, frame(true, 0, OpClose, []byte{0x03, 0xe8, 0xff, 0xfe}, nil), "bad-close-reason-utf8"},
		{"close code 1005 on the wire", Server, frame(true, 0, OpClose, []byte{0x03, 0xed}, nil), "bad-close-code"},
		{"1-byte close body", Server, frame(true, 0, OpClose, []byte{0x03}, nil), "close-payload-1-byte"},
		{"lone continuation", Server, frame(true, 0, OpContinuation, []byte("a"), nil), "unexpected-continuation"},
		{"non-minimal length", Server, []byte{0x82, 126, 0, 5, 'a', 'b', 'c', 'd', 'e'}, "non-minimal-length"},
		{"bad text", Server, frame(true, 0, OpText, []byte{0xc3, 0x28}, nil), "bad-text-utf8"},
	}
	for _, tt := range tests {
		d := NewDecoder(Options{})
		feed(d, tt.from, tt.stream, 3)
		if got := kinds(d.Summary()); !strings.Contains(got, tt.want) {
			t.Errorf("%s: violations %q, want %s", tt.name, got, tt.want)
		}
	}
}

// deflate compresses messages the way a permessage-deflate sender does
// (RFC 7692 section 7.2.1): sync flush, trailing 00 00 ff ff removed, the
// compressor's state kept between messages unless no_context_takeover.
func deflate(t *testing.T, msgs []string, contextTakeover bool) [][]byte {
	var out [][]byte
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	for _, m := range msgs {
		if !contextTakeover {
			buf.Reset()
			w.Reset(&buf)
		}
		start := buf.Len()
		w.Write([]byte(m))
		w.Flush()
		b := append([]byte(nil), buf.Bytes()[start:]...)
		if !bytes.HasSuffix(b, []byte{0, 0, 0xff, 0xff}) {
			t.Fatal("flush did not end with 00 00 ff ff")
		}
		out = append(out, b[:len(b)-4])
	}
	return out
}

func TestPermessageDeflate(t *testing.T) {
	msgs := []string{"the same words again", "the same words again and again", strings.Repeat("the same words again ", 40)}
	for _, takeover := range []bool{true, false} {
		compressed := deflate(t, msgs, takeover)
		var stream []byte
		for _, c := range compressed {
			stream = append(stream, frame(true, 4, OpText, c, nil)...)
		}
		d := NewDecoder(Options{PayloadBytes: 1024, Extensions: true, Deflate: &Deflate{ServerNoContextTakeover: !takeover}})
		feed(d, Server, stream, 7)
		s := d.Summary()
		if v := kinds(s); v != "" {
			t.Fatalf("takeover %v: violations %s", takeover, v)
		}
		for i, m := range s.Messages {
			if !m.Compressed || string(m.Payload) != msgs[i] || m.Decompressed != int64(len(msgs[i])) {
				t.Errorf("takeover %v: message %d = %q (%d), want %q", takeover, i, m.Payload, m.Decompressed, msgs[i])
			}
		}
		if takeover && len(compressed[1]) >= len(msgs[1]) {
			t.Errorf("the second message should reuse the first's context and compress well")
		}
	}
}

// TestInflateReachingFarBack: a message whose back-references reach past
// the short context inflateWith tries first is inflated again with the
// whole window, and every message comes out as it went in: here the
// compressor copies from a 20 KB message sent before, and from the
// message just before.
func TestInflateReachingFarBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := make([]byte, 20<<10)
	for i := range words {
		words[i] = "abcdefghij klmnopqrstuvwxyz"[rng.IntN(27)]
	}
	msgs := []string{string(words)}
	for k := range 12 {
		far := string(words[k*700 : k*700+600]) // 14-20 KB back
		msgs = append(msgs, far, "again: "+far[:300])
	}
	compressed := deflate(t, msgs, true)

	var context []byte
	var out []byte
	for i, c := range compressed {
		in := append(slices.Clone(c), 0, 0, 0xff, 0xff)
		n, far, err := inflateWith(&out, in, context, 1<<20, true)
		if err == io.ErrUnexpectedEOF {
			err = nil // the sync marker ends no block: the stream goes on
		}
		if err != nil || string(out) != msgs[i] || n != int64(len(msgs[i])) {
			t.Fatalf("message %d: %d bytes, %v; not what was sent", i, n, err)
		}
		if wantFar := i > 0 && i%2 == 1; far != wantFar {
			t.Errorf("message %d: reached past the short context %v, want %v", i, far, wantFar)
		}
		context = append(context, out...)
		context = context[max(0, len(context)-32<<10):]
		out = out[:0]
	}

	var stream []byte
	for _, c := range compressed {
		stream = append(stream, frame(true, 4, OpText, c, nil)...)
	}
	d := NewDecoder(Options{PayloadBytes: 32 << 10, MaxMessages: 100, Extensions: true, Deflate: &Deflate{}})
	feed(d, Server, stream, 1000)
	s := d.Summary()
	if v := kinds(s); v != "" || len(s.Messages) != len(msgs) {
		t.Fatalf("violations %q, %d messages", v, len(s.Messages))
	}
	for i, m := range s.Messages {
		if string(m.Payload) != msgs[i] || m.Decompressed != int64(len(msgs[i])) {
			t.Errorf("message %d: %d bytes, not what was sent", i, m.Decompressed)
		}
	}
}

func TestDeflateBomb(t *testing.T) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write(make([]byte, 64<<20))
	w.Flush()
	b := buf.Bytes()
	stream := frame(true, 4, OpBinary, b[:len(b)-4], nil)
	d := NewDecoder(Options{Extensions: true, Deflate: &Deflate{}, MaxDecompressed: 1 << 20})
	start := time.Now()
	feed(d, Server, stream, 1<<16)
	if time.Since(start) > 5*time.Second {
		t.Error("inflating the bomb was not cut short")
	}
	if got := kinds(d.Summary()); !strings.Contains(got, "decompressed-too-large") {
		t.Errorf("violations %q, want decompressed-too-large", got)
	}
}

func TestGapResynchronises(t *testing.T) {
	d := NewDecoder(Options{})
	feed(d, Server, frame(true, 0, OpText, []byte("first"), nil)[:4], 100)
	d.Gap(Server, 100, evidence.Stamp{Time: t0})
	feed(d, Server, append([]byte{0xde, 0xad}, frame(true, 0, OpText, []byte("after"), nil)...), 100)
	s := d.Summary()
	last := s.Messages[len(s.Messages)-1]
	if string(last.Payload) != "after" || !strings.Contains(kinds(s), "resynchronised") {
		t.Errorf("after a gap: messages %+v, violations %s", s.Messages, kinds(s))
	}
}

func TestParseFrameSeed000(t *testing.T) {
	op, payload, masked, size, ok := ParseFrame([]byte{0x88, 0x02, 0x03, 0xe8})
	if !ok || op != OpClose || masked || size != 4 || CloseCode(payload) != 1000 {
		t.Errorf("88 02 03 e8: op %d masked %v size %d code %d ok %v", op, masked, size, CloseCode(payload), ok)
	}
	if _, _, _, _, ok := ParseFrame([]byte("GET / HTTP/1.1\r\n")); ok {
		t.Error("an HTTP request is not a frame")
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add(frame(true, 0, OpText, []byte("hi"), key), frame(true, 0, OpClose, []byte{3, 0xe8}, nil), uint8(3), true)
	c := deflate(&testing.T{}, []string{"aaaa", "aaaa"}, true)
	f.Add(frame(true, 4, OpText, c[0], key), frame(true, 4, OpText, c[1], nil), uint8(1), true)
	f.Add([]byte{0x88, 0x02, 0x03, 0xe8}, []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, uint8(2), false)
	f.Fuzz(func(t *testing.T, client, server []byte, chunk uint8, deflated bool) {
		defer testenv.Watchdog(3*time.Second, append(append([]byte{}, client...), server...))()
		opts := Options{MaxDecompressed: 1 << 20}
		if deflated {
			opts.Extensions, opts.Deflate = true, &Deflate{}
		}
		d := NewDecoder(opts)
		n := int(chunk%16) + 1
		feed(d, Client, client, n)
		d.Gap(Client, 10, evidence.Stamp{})
		feed(d, Server, server, n)
		d.End(Client, evidence.Stamp{})
		d.End(Server, evidence.Stamp{})
		s := d.Summary()
		for _, m := range s.Messages {
			if len(m.Payload) > 256 {
				t.Fatalf("payload over the cap: %d", len(m.Payload))
			}
		}
	})
}

// TestSummaryLetsTheDecoderGo checks that what a conversation keeps after
// it ends (its summary) does not keep the decoder alive: with context
// takeover each direction holds a 32 KiB inflate window, and a capture of
// 100,000 WebSocket conversations would keep them all. End alone already
// lets a direction's window go.
func TestSummaryLetsTheDecoderGo(t *testing.T) {
	msgs := []string{"the same words again", strings.Repeat("the same words again ", 40)}
	var stream []byte
	for _, c := range deflate(t, msgs, true) {
		stream = append(stream, frame(true, 4, OpText, c, nil)...)
	}
	d := NewDecoder(Options{Extensions: true, Deflate: &Deflate{}})
	feed(d, Server, stream, 5)
	if len(d.dirs[Server].dict) == 0 {
		t.Fatal("no inflate window kept between messages with context takeover")
	}
	d.End(Server, evidence.Stamp{Time: t0})
	if d.dirs[Server].dict != nil || d.dirs[Server].compressed != nil {
		t.Error("the direction ended but its inflate window and buffers are still held")
	}
	s := d.Summary()
	gone := weak.Make(d)
	d = nil
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("the summary keeps the decoder alive")
	}
	if len(s.Messages) != 2 || string(s.Messages[0].Payload) != msgs[0] {
		t.Errorf("summary after the decoder went: %+v", s.Messages)
	}
}

// TestMessageCapKeepsFirstAndLast: past MaxMessages a conversation keeps
// its first messages (how it started) and its most recent (how it ended),
// in order, and counts the rest; Summary may be asked for more than once.
func TestMessageCapKeepsFirstAndLast(t *testing.T) {
	for _, total := range []int{3, 8, 9, 13, 200, 201} {
		d := NewDecoder(Options{MaxMessages: 8, PayloadBytes: 16})
		var stream []byte
		for i := range total {
			stream = append(stream, frame(true, 0, OpText, []byte(strconv.Itoa(i)), nil)...)
		}
		feed(d, Server, stream, 5)
		var want []string
		for i := range total {
			if total <= 8 || i < 4 || i >= total-4 {
				want = append(want, strconv.Itoa(i))
			}
		}
		for range 2 {
			s := d.Summary()
			var got []string
			for _, m := range s.Messages {
				got = append(got, string(m.Payload))
			}
			if strings.Join(got, ",") != strings.Join(want, ",") || s.MessagesOmitted != int64(max(0, total-8)) {
				t.Errorf("%d messages: kept %v (%d omitted), want %v (%d)", total, got, s.MessagesOmitted, want, max(0, total-8))
			}
		}
	}
}

// TestKeptPayloadsStay: the payloads kept, first half and ring alike, are
// the messages' own (cut at PayloadBytes, none when empty) whatever their
// lengths, while the ring lends buffers from message to message; and a
// summary taken mid-conversation is not written over by the messages
// after it.
func TestKeptPayloadsStay(t *testing.T) {
	payload := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), (i*7)%53) }
	for _, split := range []int{0, 5, 8, 13, 40} {
		const total, keep, cut = 60, 8, 40
		d := NewDecoder(Options{MaxMessages: keep, PayloadBytes: cut})
		want := func(n int) []string {
			var w []string
			for i := range n {
				if n <= keep || i < keep/2 || i >= n-keep/2 {
					w = append(w, payload(i)[:min(cut, len(payload(i)))])
				}
			}
			return w
		}
		got := func(s *Summary) []string {
			var g []string
			for _, m := range s.Messages {
				if m.Payload != nil && len(m.Payload) == 0 {
					t.Errorf("an empty payload kept as empty, not none")
				}
				g = append(g, string(m.Payload))
			}
			return g
		}
		send := func(from, to int) {
			var stream []byte
			for i := from; i < to; i++ {
				stream = append(stream, frame(true, 0, OpText, []byte(payload(i)), []byte{9, 8, 7, 6})...)
			}
			feed(d, Client, stream, 3)
		}
		send(0, split)
		first := d.Summary()
		send(split, total)
		last := d.Summary()
		if g, w := got(first), want(split); !slices.Equal(g, w) {
			t.Errorf("split %d: the first summary became %q, want %q", split, g, w)
		}
		if g, w := got(last), want(total); !slices.Equal(g, w) {
			t.Errorf("split %d: kept %q, want %q", split, g, w)
		}
	}
}

// TestSlideWindowKeepsTheLastWindow: whatever the sizes of the messages,
// the last window bytes of the history are those of the whole output, and
// the buffer stays within twice the window.
func TestSlideWindowKeepsTheLastWindow(t *testing.T) {
	const window = 1 << 10
	var dict, all []byte
	for i := range 3000 {
		n := (i * 7919) % 300
		if i%97 == 0 {
			n = window + i%5 // bigger than the window now and then
		}
		p := make([]byte, n)
		for k := range p {
			p[k] = byte(i + k)
		}
		all = append(all, p...)
		dict = slideWindow(dict, p, window)
		got := dict[max(0, len(dict)-window):]
		want := all[max(0, len(all)-window):]
		if !bytes.Equal(got, want) {
			t.Fatalf("after message %d (%d bytes) the window differs", i, n)
		}
		if cap(dict) > 2*window+300 {
			t.Fatalf("after message %d the buffer holds %d bytes for a %d-byte window", i, cap(dict), window)
		}
	}
}

// TestSlideWindowGrowsTwice: filling the history of a 32 KiB window with
// small messages moves it to new memory twice (a few KiB, then its full
// size), and sliding afterwards never does.
func TestSlideWindowGrowsTwice(t *testing.T) {
	var dict []byte
	moves := 0
	for i := range 1000 {
		before := unsafe.SliceData(dict)
		dict = slideWindow(dict, bytes.Repeat([]byte{byte(i)}, 100+i%50), 32<<10)
		if before != nil && unsafe.SliceData(dict) != before {
			moves++
		}
	}
	if moves != 1 || cap(dict) != 40<<10 {
		t.Errorf("the history moved %d times after its first buffer and holds %d bytes, want once and 40 KiB", moves, cap(dict))
	}
}

// BenchmarkChattyDeflate decodes a long permessage-deflate conversation
// of small messages with context takeover: past the first 32 KiB of
// output every message inflates against a full window.
func BenchmarkChattyDeflate(b *testing.B) {
	msgs := make([]string, 5000)
	for i := range msgs {
		msgs[i] = fmt.Sprintf(`{"seq":%d,"user":"u%d","text":"%s"}`, i, i%7, strings.Repeat("chatty words ", 5+i%10))
	}
	var stream []byte
	for _, c := range deflate(&testing.T{}, msgs, true) {
		stream = append(stream, frame(true, 4, OpText, c, nil)...)
	}
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		d := NewDecoder(Options{Extensions: true, Deflate: &Deflate{}})
		feed(d, Server, stream, 1400)
		if s := d.Summary(); s.MessagesOmitted != int64(len(msgs)-DefaultMaxMessages) || len(s.Violations) > 0 {
			b.Fatalf("%d omitted, violations %v", s.MessagesOmitted, s.Violations)
		}
	}
}

// BenchmarkManyLive decodes small masked text messages, one frame per
// packet, for 2,000 conversations at once, round robin, as a busy
// server's capture interleaves them: each message finds its decoder and
// its slot of the message ring out of the cache, which is what decoding
// costs on a WebSocket-heavy capture.
func BenchmarkManyLive(b *testing.B) {
	const live, perConversation = 2000, 400
	frames := make([][]byte, perConversation)
	for i := range frames {
		text := fmt.Sprintf(`{"seq":%d,"user":"u%d","text":"%s"}`, i, i%7, strings.Repeat("x", 60+(i*37)%141))
		frames[i] = frame(true, 0, OpText, []byte(text), []byte{1, 2, 3, 4})
	}
	b.ReportAllocs()
	for b.Loop() {
		decoders := make([]*Decoder, live)
		for i := range decoders {
			decoders[i] = NewDecoder(Options{})
		}
		at := &evidence.At{Time: t0, Ref: evidence.Ref{Source: "t"}}
		for _, f := range frames {
			for _, d := range decoders {
				at.Ref.Packet++
				d.Data(Client, f, at)
			}
		}
		if s := decoders[live-1].Summary(); s.MessagesOmitted != perConversation-DefaultMaxMessages {
			b.Fatalf("%d omitted", s.MessagesOmitted)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*live*perConversation), "ns/message")
}

// TestUnmask: the word-at-a-time unmasking gives what XORing each byte
// with key[(offset+i) mod 4] gives, for every length and starting offset.
func TestUnmask(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for n := range 40 {
		for offset := range int64(9) {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i*31 + int(offset))
			}
			want := slices.Clone(b)
			for i := range want {
				want[i] ^= key[(offset+int64(i))%4]
			}
			unmask(b, key, offset)
			if !bytes.Equal(b, want) {
				t.Fatalf("%d bytes at offset %d: % x, want % x", n, offset, b, want)
			}
		}
	}
}
