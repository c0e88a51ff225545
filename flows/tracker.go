// Package flows rebuilds TCP conversations from packets: who opened each one,
// whether the handshake finished, how each side's receive window moved, who
// closed it and how, with Zeek-compatible conn_state and history, and hands
// each direction's bytes, in order and with gaps marked, to a Sink.
package flows

import (
	"io"
	"math"
	"net/netip"
	"sort"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"wiremortem/evidence"
	"wiremortem/flows/capture"
)

// Options controls the tracker. The zero value of a field means its default.
type Options struct {
	// IdleTimeout finishes a conversation that saw no packet for this long
	// (packet time, not wall time). Default 5 minutes, Zeek's
	// tcp_inactivity_timeout.
	IdleTimeout time.Duration
	// CloseLinger keeps a closed or reset conversation around this long so
	// its last ACK or a retransmitted FIN does not start a new one. Default
	// 5 s, Zeek's tcp_close_delay.
	CloseLinger time.Duration
	// MaxConversations caps live conversations; past it the least recently
	// active one is finished early ("evicted"). Default 1,000,000.
	MaxConversations int
	// MaxBufferedPagesPerConversation and MaxBufferedPagesTotal cap the
	// out-of-order bytes reassembly holds (pages of 1,900 bytes). Defaults
	// 64 per conversation (about 120 KB) and 16,384 in total (about 31 MB).
	MaxBufferedPagesPerConversation int
	MaxBufferedPagesTotal           int
	// KeyPacketCap and WindowSampleCap bound the per-conversation detail.
	// Defaults 64 and 256 (per side).
	KeyPacketCap    int
	WindowSampleCap int
	// NoDetail leaves out the key packets and window samples (KeyPackets,
	// KeyPacketsDropped and Windows stay empty), for a caller that shows
	// neither, such as the flows table: they are most of a long
	// conversation's memory. Every other field is as without it.
	NoDetail bool
	// ReassembleAll hands every packet with stream data to gopacket's
	// reassembly, without the in-order path (see fastState). The sinks
	// receive the same calls either way; this is for the tests that check
	// it.
	ReassembleAll bool
	// NewSink, if set, receives each conversation's reassembled bytes.
	NewSink func(*Conversation) Sink
	// OnDone receives every conversation when the tracker finishes it, with
	// its sink (nil when NewSink is nil). Required.
	OnDone func(*Conversation, Sink)
	// Shards is how many goroutines follow conversations; 0 or 1 means
	// one, the caller's. With more, Run reads and decodes the packets and
	// hands each to the shard its 4-tuple hashes to (see shard.go). The
	// conversations and Stats are those one tracker finds, except that the
	// caps on live conversations and buffered bytes are divided among the
	// shards; but OnDone is called from the shards' goroutines (one call
	// at a time, in no set order) with provisional IDs that grow with the
	// conversation's first packet without being dense: Renumber gives the
	// kept conversations the IDs one tracker gives.
	Shards int
}

func (o *Options) setDefaults() {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.CloseLinger <= 0 {
		o.CloseLinger = 5 * time.Second
	}
	if o.MaxConversations <= 0 {
		o.MaxConversations = 1_000_000
	}
	if o.MaxBufferedPagesPerConversation <= 0 {
		o.MaxBufferedPagesPerConversation = 64
	}
	if o.MaxBufferedPagesTotal <= 0 {
		o.MaxBufferedPagesTotal = 16384
	}
	if o.KeyPacketCap <= 0 {
		o.KeyPacketCap = 64
	}
	if o.WindowSampleCap <= 0 {
		o.WindowSampleCap = 256
	}
}

// Stats accounts for every packet read and every cap hit, so that nothing is
// lost silently: Packets = TCP + NotTCP + Fragments + Malformed +
// UnsupportedLink.
type Stats struct {
	Packets         int64 `json:"packets"`
	TCP             int64 `json:"tcp"`
	NotTCP          int64 `json:"not_tcp"`
	Fragments       int64 `json:"ip_fragments"`
	Malformed       int64 `json:"malformed"`
	UnsupportedLink int64 `json:"unsupported_link_type"`
	// UnsupportedLinkTypes names the link types counted above.
	UnsupportedLinkTypes map[string]int64 `json:"unsupported_link_types,omitempty"`
	// Truncated TCP packets were cut by the snap length; they still count
	// for header analysis (flags, sequence numbers, windows).
	Truncated int64 `json:"snaplen_truncated"`

	Conversations int64 `json:"conversations"`
	PeakLive      int   `json:"peak_live_conversations"`
	IdleFinished  int64 `json:"idle_finished"`
	Evicted       int64 `json:"evicted"`
	// ReassemblyGaps counts holes handed to sinks; GapBytes their size.
	ReassemblyGaps     int64 `json:"reassembly_gaps"`
	ReassemblyGapBytes int64 `json:"reassembly_gap_bytes"`
	// LateStreamBytes came out of reassembly when no sink would take
	// them (dropped): after their side's end (bytes sent again after the
	// close), after their conversation finished, or after its sink was
	// done.
	LateStreamBytes int64 `json:"late_stream_bytes"`
}

// Tracker follows TCP conversations. Feed it packets in capture order with
// Packet, then call Finish.
type Tracker struct {
	opts  Options
	dec   *decoder
	seg   segment
	conns map[connKey]*conn
	// open and closed are intrusive lists ordered by last activity; idle
	// and lingering conversations are finished from their fronts.
	open, closed connList
	// listeners are endpoints seen answering a SYN: a later conversation
	// that starts mid-stream takes them as its server.
	listeners map[netip.AddrPort]struct{}
	nextID    int
	// inOrder counts the packets whose bytes took the in-order path (for
	// its test).
	inOrder   int
	now       time.Time
	lastSweep time.Time
	asm       *reassembly.Assembler
	// ctxs is what is left of the slab reassembly contexts are cut from
	// (see assemble).
	ctxs []asmContext
	// synTCP is where a held SYN is decoded again (see reassemble).
	synTCP layers.TCP
	// files and fileIndex name the capture files behind packet keys (see
	// packetKey).
	files     []string
	fileIndex map[string]int
	stats     Stats
	// idx is the number of packets read so far, the one being processed
	// included: one packet starts at most one conversation, so a shard
	// uses it as a provisional ID (see Options.Shards).
	idx int64
	// sharded is set on a shard of a sharded run: the dispatcher counts
	// packets and decides when to sweep, listeners come from its log, and
	// spans records each conversation's first packet and the packet during
	// which it finished, for the peak of live conversations.
	sharded     bool
	listenerLog *listenerLog
	spans       []convSpan
}

// NewTracker returns a tracker.
func NewTracker(opts Options) *Tracker {
	opts.setDefaults()
	t := &Tracker{
		opts:      opts,
		dec:       newDecoder(),
		conns:     make(map[connKey]*conn),
		listeners: make(map[netip.AddrPort]struct{}),
		fileIndex: make(map[string]int),
	}
	if opts.NewSink != nil {
		t.asm = newAssembler(t)
	}
	return t
}

// PacketSource is a capture reader or a merge of several.
type PacketSource interface {
	Next(*capture.Packet) error
}

// Run reads src to the end and finishes every conversation. It returns the
// source's error unless it is io.EOF. Damaged files in a capture.Merger are
// reported through the Merger's callback, not here.
func (t *Tracker) Run(src PacketSource) error {
	if t.opts.Shards > 1 {
		return t.runSharded(src)
	}
	var p capture.Packet
	for {
		err := src.Next(&p)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Finish()
			return err
		}
		t.Packet(&p)
	}
	t.Finish()
	return nil
}

// Stats returns the packet accounting so far.
func (t *Tracker) Stats() Stats { return t.stats }

// sweepEvery is how often (in packet time) idle and lingering conversations
// are looked for.
const sweepEvery = time.Second

// Packet processes one captured packet.
func (t *Tracker) Packet(p *capture.Packet) {
	t.idx++
	if !t.count(t.dec.decode(p, &t.seg), p) {
		return
	}
	if t.sweepDue(p) {
		t.sweep()
	}
	t.track(p)
}

// count accounts for a decoded packet and reports whether it is TCP.
func (t *Tracker) count(kind packetKind, p *capture.Packet) bool {
	t.stats.Packets++
	switch kind {
	case kindNotTCP:
		t.stats.NotTCP++
		return false
	case kindFragment:
		t.stats.Fragments++
		return false
	case kindMalformed:
		t.stats.Malformed++
		return false
	case kindUnsupportedLink:
		t.stats.UnsupportedLink++
		if t.stats.UnsupportedLinkTypes == nil {
			t.stats.UnsupportedLinkTypes = map[string]int64{}
		}
		t.stats.UnsupportedLinkTypes[p.LinkType.String()]++
		return false
	}
	t.stats.TCP++
	if p.Truncated() {
		t.stats.Truncated++
	}
	return true
}

// sweepDue moves packet time on to a TCP packet's and reports whether a
// second of it passed since the last sweep.
func (t *Tracker) sweepDue(p *capture.Packet) bool {
	if p.Time.After(t.now) {
		t.now = p.Time
	}
	if t.now.Sub(t.lastSweep) >= sweepEvery {
		t.lastSweep = t.now
		return true
	}
	return false
}

// track follows the TCP packet t.seg was decoded from.
func (t *Tracker) track(p *capture.Packet) {
	seg := &t.seg
	stamp := evidence.Stamp{Time: p.Time, Ref: p.Ref}
	key := makeKey(seg.src, seg.dst)
	c := t.conns[key]
	var previous *conn
	if c != nil && c.isReuse(seg) {
		t.finish(c, "reused")
		previous, c = c, nil
	}
	if c == nil {
		c = t.start(key, seg, stamp)
		if previous != nil {
			c.retryOf(previous, seg)
		}
	}
	fromClient := seg.src == c.conv.Client
	c.process(seg, fromClient, stamp)
	if seg.has(flagSYN) && seg.has(flagACK) && !t.sharded {
		t.listeners[seg.src] = struct{}{}
	}
	t.touch(c)
	if c.sink != nil && t.asm != nil && !c.sinkDone {
		t.reassemble(c, seg, p, fromClient)
	}
}

// Finish ends every live conversation ("capture-end") and flushes
// reassembly. Conversations reach OnDone sorted by ID.
func (t *Tracker) Finish() {
	t.idx = math.MaxInt64 // for spans: finished after every packet
	if t.asm != nil {
		t.asm.FlushAll()
	}
	live := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		live = append(live, c)
	}
	sort.Slice(live, func(i, j int) bool { return live[i].conv.ID < live[j].conv.ID })
	for _, c := range live {
		reason := "capture-end"
		if c.closedForGood() {
			reason = c.closeReason()
		}
		t.finish(c, reason)
	}
}

// sweep finishes conversations idle past their timeout.
func (t *Tracker) sweep() {
	if t.asm != nil {
		// Give reassembly the same deadlines first, so the bytes it still
		// holds reach the sinks before the conversations finish.
		t.asm.FlushWithOptions(reassembly.FlushOptions{T: t.now.Add(-t.opts.CloseLinger), TC: t.now.Add(-t.opts.IdleTimeout)})
	}
	for c := t.closed.front(); c != nil && t.now.Sub(c.lastSeen) > t.opts.CloseLinger; c = t.closed.front() {
		t.finish(c, c.closeReason())
	}
	for c := t.open.front(); c != nil && t.now.Sub(c.lastSeen) > t.opts.IdleTimeout; c = t.open.front() {
		t.stats.IdleFinished++
		t.finish(c, "idle")
	}
}

// start creates a conversation for a packet that matches no live one,
// choosing its client the way Zeek does (TCPAnalyzer::WantConnection), with
// one addition: an endpoint seen answering SYNs is a server.
func (t *Tracker) start(key connKey, seg *segment, stamp evidence.Stamp) *conn {
	if len(t.conns) >= t.opts.MaxConversations {
		if victim := t.open.front(); victim != nil {
			t.stats.Evicted++
			t.finish(victim, "evicted")
		} else if victim := t.closed.front(); victim != nil {
			t.finish(victim, victim.closeReason())
		}
	}
	id := int(t.idx)
	if !t.sharded {
		t.nextID++
		id = t.nextID
	}
	client, server, origin, flipped := seg.src, seg.dst, "first-packet", false
	switch {
	case seg.has(flagSYN) && !seg.has(flagACK):
		origin = "syn"
	case seg.has(flagSYN) && seg.has(flagACK):
		// The SYN was not captured; its answer says who the server is.
		// Zeek flips these too (zeek/zeek#2191).
		flipped, origin = true, "syn-ack"
	case t.isListener(seg.src) && !t.isListener(seg.dst):
		flipped, origin = true, "listener"
	case t.isListener(seg.dst):
		origin = "listener"
	case likelyServerPorts[seg.src.Port()]:
		if likelyServerPorts[seg.dst.Port()] {
			flipped = !seg.has(flagSYN) && seg.src.Port() < seg.dst.Port()
		} else {
			flipped = true
		}
		if flipped {
			origin = "port"
		}
	}
	if flipped {
		client, server = server, client
	}
	c := newConn(key, id, client, server, origin, stamp, &t.opts)
	if flipped {
		c.hist.add('^')
	}
	t.conns[key] = c
	t.open.pushBack(c)
	t.stats.Conversations++
	if len(t.conns) > t.stats.PeakLive {
		t.stats.PeakLive = len(t.conns)
	}
	if t.opts.NewSink != nil {
		c.sink = t.opts.NewSink(c.conv)
	}
	return c
}

// isListener reports whether a was seen answering a SYN before the packet
// being processed.
func (t *Tracker) isListener(a netip.AddrPort) bool {
	if t.listenerLog != nil {
		return t.listenerLog.before(a, t.idx)
	}
	_, ok := t.listeners[a]
	return ok
}

// touch moves c to the back of its activity list, switching lists when it
// just closed.
func (t *Tracker) touch(c *conn) {
	// Activity is dated by the capture's clock, the latest packet time so
	// far, not by this packet's own time: a capture's times can go
	// backwards, and the lists stay in lastSeen order only this way, which
	// sweep relies on (it stops at the first conversation not yet due).
	c.lastSeen = t.now
	closed := c.closedForGood()
	if closed != c.onClosedList {
		if c.onClosedList {
			t.closed.remove(c)
			t.open.pushBack(c)
		} else {
			t.open.remove(c)
			t.closed.pushBack(c)
		}
		c.onClosedList = closed
		return
	}
	if c.onClosedList {
		t.closed.moveToBack(c)
	} else {
		t.open.moveToBack(c)
	}
}

// finish completes c, hands it to OnDone and forgets it.
func (t *Tracker) finish(c *conn, reason string) {
	if c.finished {
		return
	}
	c.finished = true
	if c.onClosedList {
		t.closed.remove(c)
	} else {
		t.open.remove(c)
	}
	if t.conns[c.key] == c {
		delete(t.conns, c.key)
	}
	c.complete(reason)
	if c.sink != nil && !c.sinkDone {
		c.endSink()
	}
	if t.sharded {
		t.spans = append(t.spans, convSpan{start: int64(c.conv.ID), end: t.idx})
	}
	t.opts.OnDone(c.conv, c.sink)
}

// connKey identifies a 4-tuple regardless of direction. Plain bytes hash
// faster than netip values, which carry a zone pointer.
type connKey struct {
	a, b   [16]byte
	pa, pb uint16
}

func makeKey(x, y netip.AddrPort) connKey {
	if x.Compare(y) > 0 {
		x, y = y, x
	}
	return connKey{a: x.Addr().As16(), b: y.Addr().As16(), pa: x.Port(), pb: y.Port()}
}
