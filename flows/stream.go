package flows

import (
	"encoding/binary"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"wiremortem/evidence"
	"wiremortem/flows/capture"
)

// Sink receives one conversation's bytes, each direction in sequence order,
// from gopacket's reassembly. Methods are called from the tracker's
// goroutine, in packet order.
type Sink interface {
	// Data delivers the next in-order bytes sent by side. b is valid only
	// during the call; loc maps an offset in b to the packet that carried
	// it.
	Data(from Side, b []byte, loc evidence.Locator)
	// Gap says that missing bytes sent by side were never captured (or were
	// given up on when a reassembly buffer cap was hit): the next Data does
	// not follow the previous one.
	Gap(from Side, missing int, at evidence.Stamp)
	// End says side will send nothing more (FIN or RST reached in sequence,
	// or the conversation finished); it comes once per side, and nothing
	// of that side follows it (later bytes are counted as late).
	End(from Side, at evidence.Stamp)
	// Done reports that the sink wants no more bytes (it found nothing it
	// can decode); the tracker then stops reassembling the conversation.
	Done() bool
}

// Reassembly is keyed by conversation, not by 4-tuple: the network "flow"
// handed to gopacket is the conversation ID with the sending side in the low
// bit. So the tracker alone decides where one conversation ends and the next
// begins (port reuse, idle flush), and reassembly can never mix two
// conversations on the same ports.
var convEndpoint = gopacket.RegisterEndpointType(7001, gopacket.EndpointTypeMetadata{Name: "wiremortem-conversation", Formatter: func(b []byte) string {
	return "conv"
}})

type asmContext struct {
	ci gopacket.CaptureInfo
	c  *conn
	// from is the side that sent the packet being assembled.
	from Side
}

func (a *asmContext) GetCaptureInfo() gopacket.CaptureInfo { return a.ci }

type streamFactory struct{ t *Tracker }

func (f streamFactory) New(_, _ gopacket.Flow, _ *layers.TCP, ac reassembly.AssemblerContext) reassembly.Stream {
	ctx := ac.(*asmContext)
	if ctx.c.finished || ctx.c.sink == nil || ctx.c.sinkDone {
		return nil
	}
	// The first connection of a conversation that began on the in-order
	// path takes over that path's stream; a later one (after reassembly
	// removed the first) gets a new one.
	s := ctx.c.stream
	if s == nil || s.pooled {
		old := s
		s = f.t.newStream(ctx.c)
		if old != nil {
			// A side that ended stays ended: its bytes that come after
			// (a retransmission while the closed conversation lingers)
			// are late, not a new start, and its end is not said twice.
			s.ended = old.ended
		}
	}
	s.pooled = true
	return s
}

// newStream gives c the stream through which its bytes reach its sink.
func (t *Tracker) newStream(c *conn) *stream {
	s := &stream{t: t, c: c}
	s.loc.t = t
	c.stream = s
	return s
}

func newAssembler(t *Tracker) *reassembly.Assembler {
	a := reassembly.NewAssembler(reassembly.NewStreamPool(streamFactory{t}))
	a.MaxBufferedPagesPerConnection = t.opts.MaxBufferedPagesPerConversation
	a.MaxBufferedPagesTotal = t.opts.MaxBufferedPagesTotal
	return a
}

// reassemble hands a packet that carries stream data or ends a direction
// to gopacket's reassembly. Pure ACKs carry nothing for the sinks and are
// skipped: that halves the work on bulk transfers. SYNs are held until the
// conversation's first packet with data, a FIN or a RST, then handed over
// first, in their order: a conversation of SYNs alone (a SYN storm, a scan)
// never becomes a reassembly connection, which would stay in the pool,
// swept every second, until the idle timeout.
func (t *Tracker) reassemble(c *conn, seg *segment, p *capture.Packet, fromClient bool) {
	if seg.payloadLen == 0 && seg.flags&(flagFIN|flagRST) == 0 && (seg.flags&flagSYN == 0 || !c.reassembling) {
		// Past a few, more SYNs of the same conversation change nothing in
		// reassembly (a synchronised half drops them).
		if seg.flags&flagSYN != 0 && len(t.dec.tcp.Contents) >= 20 && len(c.heldSYNs) < maxHeldSYNs {
			h := heldSYN{fromClient: fromClient, ci: t.captureInfo(p)}
			copy(h.header[:], t.dec.tcp.Contents[:20])
			c.heldSYNs = append(c.heldSYNs, h)
		}
		return
	}
	if !c.reassembling {
		c.reassembling = true
		if !t.startFast(c) {
			for i := range c.heldSYNs {
				h := &c.heldSYNs[i]
				t.assembleHeader(c, h.fromClient, &h.header, h.ci)
			}
		}
		c.heldSYNs = nil
	}
	if c.fast.on && t.fastPath(c, fromClient, p) {
		return
	}
	ci := t.captureInfo(p)
	if c.fast.on {
		t.leaveFast(c, ci)
	}
	t.assemble(c, fromClient, &t.dec.tcp, ci)
}

// assembleHeader hands reassembly a packet made of a fixed TCP header
// alone (a held SYN, or the in-order path's SYN at its hand-over):
// reassembly reads no option.
func (t *Tracker) assembleHeader(c *conn, fromClient bool, h *[20]byte, ci gopacket.CaptureInfo) {
	h[12] = 5<<4 | h[12]&0x0f
	if t.synTCP.DecodeFromBytes(h[:], gopacket.NilDecodeFeedback) == nil {
		t.assemble(c, fromClient, &t.synTCP, ci)
	}
}

// fastState is a conversation's in-order path. Most conversations arrive
// in order, and gopacket's reassembly then only passes each packet's
// bytes on, at the cost of a pool lookup, a lock and its bookkeeping per
// packet (a fifth of the time of analyze on long WebSocket
// conversations). So a conversation's bytes go straight to its sink while
// each packet is the next one its side was expected to send, with no SYN,
// FIN or RST; the first packet that is not hands the conversation to
// gopacket for good (see leaveFast), in the state gopacket would have
// reached itself.
type fastState struct {
	on bool
	// next is the sequence number each side's next byte carries, once
	// known (a side's first SYN, or its first packet when the capture
	// missed its SYN: the points where gopacket's reassembly starts).
	next  [2]uint32
	known [2]bool
	// first is the side known first: the side of the first packet
	// gopacket would have been given, which orients its connection (and
	// so the order in which it flushes the two sides' buffered bytes).
	first Side
}

// know starts side's half at next.
func (f *fastState) know(side Side, next uint32) {
	if !f.known[side.Other()] {
		f.first = side
	}
	f.next[side], f.known[side] = next, true
}

// startFast puts a conversation on the in-order path at its first packet
// for reassembly, unless gopacket would wait for a SYN of a side whose
// SYN was not held (then it reassembles from the start).
func (t *Tracker) startFast(c *conn) bool {
	if t.opts.ReassembleAll {
		return false
	}
	f := &c.fast
	for i := range c.heldSYNs {
		h := &c.heldSYNs[i]
		side := sideOf(h.fromClient)
		if !f.known[side] {
			// As gopacket: a half starts one past its first SYN; later SYNs
			// on it are dropped.
			f.know(side, binary.BigEndian.Uint32(h.header[4:8])+1)
		}
	}
	if (c.sawSYN(Client) && !f.known[Client]) || (c.sawSYN(Server) && !f.known[Server]) {
		return false
	}
	f.on = true
	t.newStream(c)
	return true
}

// fastPath delivers the packet being tracked to c's sink if it is the
// next in order on its side, and reports whether it did.
func (t *Tracker) fastPath(c *conn, fromClient bool, p *capture.Packet) bool {
	tcp := &t.dec.tcp
	if tcp.SYN || tcp.FIN || tcp.RST {
		return false
	}
	from := sideOf(fromClient)
	f := &c.fast
	start := false
	if !f.known[from] {
		// gopacket starts a half without its SYN only when none was seen
		// (stream.Accept); otherwise it waits for one.
		if c.sawSYN(from) {
			return false
		}
		f.know(from, tcp.Seq)
		start = true
	}
	if tcp.Seq != f.next[from] {
		return false
	}
	n := len(tcp.Payload) // captured bytes, as gopacket counts them
	f.next[from] += uint32(n)
	if n == 0 && !start {
		return true // gopacket passes nothing on either
	}
	// No lateness to check: a conversation that finished or whose sink
	// is done gets no packet, and a side ends only at a FIN.
	t.inOrder++
	s := c.stream
	s.packet = evidence.At{Time: p.Time, Ref: p.Ref}
	s.deliver(from, 0, tcp.Payload, false, &s.packet)
	return true
}

// leaveFast hands c to gopacket's reassembly: a SYN one before each known
// side's next byte puts each half where it would be had gopacket seen
// every packet so far (its next sequence number; nothing buffered, since
// the fast path only took packets in order). The side gopacket would have
// seen first goes first: when the capture missed the client's SYN, that
// is the server, and gopacket flushes what it holds of the two sides at
// the end in that order.
func (t *Tracker) leaveFast(c *conn, ci gopacket.CaptureInfo) {
	f := &c.fast
	f.on = false
	for _, side := range [...]Side{f.first, f.first.Other()} {
		if !f.known[side] {
			continue
		}
		src, dst := c.conv.Client.Port(), c.conv.Server.Port()
		if side == Server {
			src, dst = dst, src
		}
		var h [20]byte
		binary.BigEndian.PutUint16(h[0:2], src)
		binary.BigEndian.PutUint16(h[2:4], dst)
		binary.BigEndian.PutUint32(h[4:8], f.next[side]-1)
		h[13] = 0x02 // SYN
		t.assembleHeader(c, side == Client, &h, ci)
	}
}

// sawSYN reports whether side's SYN (the client's SYN, the server's
// SYN-ACK) was counted: reassembly then starts that side there, and waits
// for it rather than start at a later packet (stream.Accept, and the
// in-order path, which must start where reassembly would).
func (c *conn) sawSYN(side Side) bool {
	if side == Client {
		return c.conv.Handshake.SYNCount > 0
	}
	return c.conv.Handshake.SYNACKCount > 0
}

// sideOf names the side that sent a packet.
func sideOf(fromClient bool) Side {
	if fromClient {
		return Client
	}
	return Server
}

const maxHeldSYNs = 16

// heldSYN is a SYN waiting for its conversation's first data (see
// reassemble): its fixed TCP header and where it was captured.
type heldSYN struct {
	fromClient bool
	header     [20]byte
	ci         gopacket.CaptureInfo
}

func (t *Tracker) captureInfo(p *capture.Packet) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.OrigLen, InterfaceIndex: t.packetKey(p.Ref)}
}

// assemble hands one segment of c to reassembly.
func (t *Tracker) assemble(c *conn, fromClient bool, tcp *layers.TCP, ci gopacket.CaptureInfo) {
	from := sideOf(fromClient)
	var src, dst [8]byte
	binary.BigEndian.PutUint64(src[:], uint64(c.conv.ID)<<1|uint64(from))
	binary.BigEndian.PutUint64(dst[:], uint64(c.conv.ID)<<1|uint64(from.Other()))
	flow := gopacket.NewFlow(convEndpoint, src[:], dst[:])
	// Each packet gets its own context: gopacket keeps the context of a
	// packet it buffers (out of order) with its bytes and asks it for the
	// packet's CaptureInfo when it delivers them, later; the evidence
	// stamps come from there. One shared context named whatever packet
	// came last. Contexts are cut from slabs, not allocated one by one.
	if len(t.ctxs) == 0 {
		t.ctxs = make([]asmContext, 512)
	}
	ctx := &t.ctxs[0]
	t.ctxs = t.ctxs[1:]
	ctx.ci, ctx.c, ctx.from = ci, c, from
	t.asm.AssembleWithContext(flow, tcp, ctx)
}

// packetKey packs a packet's file and number into the one integer that
// gopacket's CaptureInfo carries through reassembly untouched
// (InterfaceIndex), so a decoder can cite the packet behind any byte
// without an allocation per packet.
func (t *Tracker) packetKey(ref evidence.Ref) int {
	i, ok := t.fileIndex[ref.Source]
	if !ok {
		i = len(t.files)
		t.files = append(t.files, ref.Source)
		t.fileIndex[ref.Source] = i
	}
	return i<<40 | int(ref.Packet)
}

func (t *Tracker) refOf(key int) evidence.Ref {
	i := key >> 40
	if i < 0 || i >= len(t.files) {
		return evidence.Ref{}
	}
	return evidence.Ref{Source: t.files[i], Packet: int64(key & (1<<40 - 1))}
}

// stream adapts gopacket's reassembly.Stream to a Sink.
type stream struct {
	t     *Tracker
	c     *conn
	ended [2]bool
	// reversed is set when reassembly's "client to server" half is our
	// server's: reassembly names directions after the first packet it saw.
	reversed bool
	// pooled is set once gopacket's reassembly holds the stream.
	pooled bool
	loc    sgLocator
	// packet names the packet behind every byte the in-order path delivers.
	packet evidence.At
}

func (s *stream) Accept(tcp *layers.TCP, _ gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, nextSeq reassembly.Sequence, start *bool, ac reassembly.AssemblerContext) bool {
	ctx := ac.(*asmContext)
	s.reversed = (dir == reassembly.TCPDirClientToServer) != (ctx.from == Client)
	if !*start && !tcp.SYN {
		// Without a SYN, reassembly waits for one before passing bytes on.
		// When the capture missed this side's SYN, start where we are.
		if !s.c.sawSYN(ctx.from) {
			*start = true
		}
	}
	return true
}

func (s *stream) side(dir reassembly.TCPFlowDirection) Side {
	fromClient := dir == reassembly.TCPDirClientToServer
	if s.reversed {
		fromClient = !fromClient
	}
	return sideOf(fromClient)
}

func (s *stream) ReassembledSG(sg reassembly.ScatterGather, _ reassembly.AssemblerContext) {
	dir, _, end, skip := sg.Info()
	length, _ := sg.Lengths()
	from := s.side(dir)
	if !s.accepts(from, length) {
		return
	}
	s.loc.sg, s.loc.n, s.loc.state = sg, length, 0
	var b []byte
	if length > 0 {
		b = sg.Fetch(length)
	}
	s.deliver(from, skip, b, end, &s.loc)
	s.loc.sg = nil
}

// accepts reports whether from's next bytes still go to the sink; bytes
// after its end, or after the conversation's, are counted as late.
func (s *stream) accepts(from Side, length int) bool {
	c := s.c
	if c.finished || c.sinkDone || s.ended[from] {
		s.t.stats.LateStreamBytes += int64(length)
		return false
	}
	return true
}

// deliver passes from's next bytes (after skip missing ones) to the sink,
// and its end if they reach it.
func (s *stream) deliver(from Side, skip int, b []byte, end bool, loc evidence.Locator) {
	c := s.c
	if skip > 0 {
		s.t.stats.ReassemblyGaps++
		s.t.stats.ReassemblyGapBytes += int64(skip)
		c.sink.Gap(from, skip, loc.At(0))
	}
	if len(b) > 0 {
		c.sink.Data(from, b, loc)
	}
	if end {
		s.ended[from] = true
		c.sink.End(from, loc.At(max(0, len(b)-1)))
	}
	if c.sink.Done() {
		c.sinkDone = true
	}
}

func (s *stream) ReassemblyComplete(reassembly.AssemblerContext) bool {
	// Remove the connection from the pool at once: the tracker keys it by
	// conversation, so no later packet can need it.
	return true
}

// endSink tells the sink both directions are over, if reassembly has not.
func (c *conn) endSink() {
	at := evidence.Stamp{Time: c.conv.End, Ref: c.conv.LastPacket}
	for _, side := range [...]Side{Client, Server} {
		if c.stream == nil || !c.stream.ended[side] {
			c.sink.End(side, at)
		}
	}
	c.sinkDone = true
}

// sgLocator finds the packet behind a byte of a ScatterGather.
type sgLocator struct {
	t  *Tracker
	sg reassembly.ScatterGather
	n  int // bytes in sg
	// state is 0 until the first question, then 1 when sg holds one
	// chunk (every byte came in the packet one names: a decoder asks
	// about each frame of a chatty WebSocket, and reassembly walks its
	// chunks at each question), 2 when it holds several.
	state uint8
	one   evidence.Stamp
}

func (l *sgLocator) At(offset int) evidence.Stamp {
	if l.sg == nil {
		return evidence.Stamp{}
	}
	if l.state == 0 {
		l.state = 2
		if l.sg.Stats().Chunks == 1 {
			ci := l.sg.CaptureInfo(0)
			l.state, l.one = 1, evidence.Stamp{Time: ci.Timestamp, Ref: l.t.refOf(ci.InterfaceIndex)}
		}
	}
	if l.state == 1 && offset >= 0 && offset < l.n {
		return l.one
	}
	ci := l.sg.CaptureInfo(offset)
	return evidence.Stamp{Time: ci.Timestamp, Ref: l.t.refOf(ci.InterfaceIndex)}
}
