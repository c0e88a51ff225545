package flows

import (
	"hash/maphash"
	"net/netip"
	"sort"
	"time"

	"wiremortem/evidence"
	"wiremortem/flows/seqnum"
)

// maxHandshakeMarks caps the SYNs and SYN-ACKs kept per conversation.
const maxHandshakeMarks = 16

// tooLargeSeqDelta is Zeek's TOO_LARGE_SEQ_DELTA: sequence jumps past this
// on a SYN or RST are not trusted.
const tooLargeSeqDelta = 1 << 20

// conn is a live conversation: the public record being built plus the state
// needed to build it.
type conn struct {
	key  connKey
	conv *Conversation
	opts *Options

	z    [2]zeekEndpoint // indexed by Side: the client is Zeek's originator
	hist history
	a    [2]sender

	lastSeen     time.Time
	prev, next   *conn
	onClosedList bool
	finished     bool

	sink     Sink
	sinkDone bool
	stream   *stream
	// reassembling is set once a packet with data, a FIN or a RST went to
	// reassembly; until then its SYNs wait in heldSYNs.
	reassembling bool
	heldSYNs     []heldSYN
	// fast is the in-order path past gopacket's reassembly (see
	// Tracker.fastPath); fast.on is cleared for good at the first packet
	// it cannot take.
	fast fastState

	keyRing int
	// last is the latest packet, kept raw: it becomes a KeyPacket only if
	// the conversation ends without it being one already.
	last lastPacket
	// zwOpen[r] is 1 + the index in conv.ZeroWindows of the episode in which
	// side r advertises a zero window, 0 when none is open.
	zwOpen [2]int
	// lastOf and lastDataOf hold each side's Traffic.Last and LastData
	// while the conversation lives (they point here), beside the state
	// every packet touches; complete moves them into the record.
	lastOf, lastDataOf [2]evidence.Stamp
}

// lastPacket is the little needed to show a conversation's last packet.
type lastPacket struct {
	stamp    evidence.Stamp
	from     Side
	flags    uint8
	seq, ack int64
	len      int
	window   int64
}

func (l *lastPacket) keyPacket(label string) KeyPacket {
	return KeyPacket{Stamp: l.stamp, From: l.from, Flags: flagString(l.flags), Seq: l.seq, Ack: l.ack, Len: l.len, Window: l.window, Label: label}
}

// sender is what we track about the packets one side sends.
type sender struct {
	seen    bool
	isn     seqnum.Value // base for relative sequence numbers
	nextSeq seqnum.Value // one past the highest sequence number sent
	// una is the highest acknowledgement the other side sent for this
	// side's data (the sender's snd_una as seen on the wire).
	una      seqnum.Value
	unaValid bool

	// Last pure ACK this side sent, for duplicate-ACK detection.
	lastAck   seqnum.Value
	lastWin   uint16
	lastAckOK bool

	// Receive window this side advertises (scaled) and the shift to apply.
	window   int64
	winValid bool
	scale    int8 // -1 until negotiated

	holes      []hole
	recent     [8]sentSegment
	recentNext int
	highTime   time.Time // time of the packet that last advanced nextSeq

	finSeq   seqnum.Value
	finSeen  bool
	dataSeen bool

	lastSample WindowSample
	sampled    bool
}

// hole is a range of this side's sequence space never seen in the capture.
type hole struct{ start, end seqnum.Value }

const maxHoles = 8

// sentSegment remembers a recent data segment to detect retransmissions of
// the same range with different bytes.
type sentSegment struct {
	seq  seqnum.Value
	n    uint32 // 16 bytes, not 24: every conn holds 16 of them
	hash uint64
}

var payloadSeed = maphash.MakeSeed()

func newConn(key connKey, id int, client, server netip.AddrPort, origin string, stamp evidence.Stamp, opts *Options) *conn {
	c := &conn{
		key:  key,
		opts: opts,
		conv: &Conversation{
			ID: id, Client: client, Server: server, Originator: origin,
			Start: stamp.Time, End: stamp.Time, FirstPacket: stamp.Ref, LastPacket: stamp.Ref,
		},
		z: [2]zeekEndpoint{newZeekEndpoint(), newZeekEndpoint()},
	}
	c.a[0].scale, c.a[1].scale = -1, -1
	c.conv.FromClient.WindowScale, c.conv.FromServer.WindowScale = -1, -1
	return c
}

// isReuse reports whether seg starts a new conversation on this 4-tuple
// (Zeek's TCPSessionAdapter::IsReuse): a SYN after both sides closed or one
// reset, or a SYN with a different initial sequence number.
func (c *conn) isReuse(seg *segment) bool {
	if !seg.has(flagSYN) {
		return false
	}
	orig := &c.z[Client]
	connOrig := Client
	if seg.has(flagACK) {
		if orig.state != stateInactive {
			return false
		}
		connOrig = Server
	}
	if !c.closedForGood() {
		ep := &c.z[connOrig]
		if seg.seq == ep.startSeq {
			return false
		}
		if !seg.has(flagACK) && ep.state == stateSYNACKSent && c.z[Server].state == stateInactive && seg.seq == c.z[Server].startSeq {
			return false
		}
	}
	return true
}

// retryOf notes when a conversation's first SYN repeats the sequence number
// of the previous conversation's SYN on the same 4-tuple: the same connect()
// retried by the kernel after a RST (Windows does so; tshark calls it a
// retransmission), not a new connection attempt.
func (c *conn) retryOf(previous *conn, seg *segment) {
	p := previous.conv
	if seg.has(flagSYN) && !seg.has(flagACK) && p.Handshake.SYNCount > 0 && p.Client == seg.src && previous.a[Client].isn == seg.seq {
		c.conv.Handshake.RetryOf = p.ID
		c.conv.Handshake.SYNRetransmissions++
		c.conv.FromClient.Retransmissions++
	}
}

// closedForGood reports whether both sides closed or either reset.
func (c *conn) closedForGood() bool {
	o, r := c.z[Client].state, c.z[Server].state
	return (o == stateClosed && r == stateClosed) || o == stateReset || r == stateReset
}

func (c *conn) closeReason() string {
	if c.z[Client].state == stateReset || c.z[Server].state == stateReset {
		return "reset"
	}
	return "closed"
}

// process updates the conversation with one segment.
func (c *conn) process(seg *segment, fromClient bool, stamp evidence.Stamp) {
	side := sideOf(fromClient)
	conv := c.conv
	if stamp.Time.After(conv.End) {
		conv.End = stamp.Time
	}
	if stamp.Time.Before(conv.Start) {
		conv.Start = stamp.Time
	}
	conv.LastPacket = stamp.Ref

	t := conv.From(side)
	t.Packets++
	if seg.has(flagSYN) {
		t.SYNs++
	}
	if seg.has(flagFIN) {
		t.FINs++
	}
	if seg.has(flagRST) {
		t.RSTs++
	}
	t.PayloadBytes += int64(seg.payloadLen)
	t.IPBytes += int64(seg.ipBytes)

	if seg.headerOnly {
		c.anomaly("tcp_header_truncated_or_bad_options")
	}
	c.zeek(seg, side)
	if seg.src != conv.Endpoint(side) {
		// The SYN showed the roles were the other way round.
		side = side.Other()
	}
	restamp(&conv.From(side).Last, &c.lastOf[side], stamp)
	duringZeroWindow := c.zwOpen[Client] > 0 || c.zwOpen[Server] > 0
	label := c.analyse(seg, side, stamp)
	c.handshake(seg, side, stamp, &label)
	c.closing(seg, side, stamp, &label, duringZeroWindow)
	c.keyPacket(seg, side, stamp, label)
}

// zeek runs Zeek's per-packet endpoint logic (TCPSessionAdapter::Process):
// history letters, sequence bookkeeping and the endpoint state machine.
func (c *conn) zeek(seg *segment, side Side) {
	ep, peer := &c.z[side], &c.z[side.Other()]
	orig := side == Client
	length := seg.payloadLen
	segLen := length
	if seg.has(flagSYN) {
		segLen++
	}
	if seg.has(flagFIN) {
		segLen++
	}
	if seg.has(flagRST) {
		segLen -= length
	}
	onePast := seg.seq.Add(seqnum.Size(segLen))
	c.initEndpoint(ep, seg, onePast)
	rel, underflow := ep.relative(seg.seq, ep.lastSeq, ep.seqWraps)
	if underflow && !seg.has(flagRST) {
		c.anomaly("seq_underflow_or_misorder")
	}
	c.updateHistory(seg, ep, orig, rel, length)
	// Zero windows are boring on a RST, after this side's RST, or after the
	// peer's FIN (Zeek's update_window).
	if seg.window == 0 && !seg.has(flagRST) && peer.state != stateClosed && ep.state != stateReset {
		c.hist.scaled(orig, 'W', &ep.win0Count, &ep.win0Thresh)
	}
	if seg.has(flagSYN) {
		if seg.has(flagRST) {
			c.anomaly("syn_with_rst")
		}
		if length > 0 {
			c.anomaly("syn_with_data")
		}
		if seg.wscaleOver14 {
			c.anomaly("window_scale_over_14")
		}
	}
	if seg.has(flagFIN) {
		ep.finCount++
	}
	if seg.has(flagRST) {
		ep.rstCount++
		if seg.has(flagFIN) {
			c.anomaly("fin_and_rst")
		}
	}
	if seg.has(flagACK) {
		if peer.state == stateInactive {
			// Start the peer's numbering as if its SYN had been seen.
			peer.startSeq = seg.ack - 1
			peer.ackSeq = seg.ack - 1
			peer.lastSeq = seg.ack - 1
		} else if _, under := peer.relative(seg.ack, peer.ackSeq, peer.ackWraps); !under && !seg.has(flagRST) {
			if d := seg.ack.Sub(peer.ackSeq); !(seg.ack == 0 && d > tooLargeSeqDelta) && d > 0 {
				if seg.ack < peer.ackSeq {
					peer.ackWraps++
				}
				peer.ackSeq = seg.ack
			}
		}
	}
	deltaLast := c.updateLastSeq(ep, onePast, seg, length, orig)
	c.updateState(seg, side, ep, peer, length, deltaLast)
}

func (c *conn) initEndpoint(ep *zeekEndpoint, seg *segment, lastSeq seqnum.Value) {
	syn := seg.has(flagSYN)
	switch ep.state {
	case stateInactive:
		if syn {
			ep.ackSeq, ep.startSeq = seg.seq, seg.seq
		} else {
			ep.ackSeq, ep.startSeq = seg.seq-1, seg.seq-1
			lastSeq = seg.seq
		}
		ep.lastSeq = lastSeq
	case stateSYNSent, stateSYNACKSent:
		if syn && seg.seq != ep.startSeq {
			c.anomaly("syn_seq_jump")
			ep.startSeq, ep.ackSeq, ep.lastSeq = seg.seq, seg.seq, lastSeq
		}
	case stateEstablished, statePartial:
		if syn {
			if ep.lastSeq != ep.startSeq.Add(1) {
				c.anomaly("syn_inside_connection")
			}
			ep.startSeq, ep.ackSeq, ep.lastSeq = seg.seq, seg.seq, lastSeq
		}
	case stateReset:
		if syn && ep.prevState == stateInactive {
			ep.startSeq, ep.ackSeq, ep.lastSeq = seg.seq, seg.seq, lastSeq
		}
	}
}

func (c *conn) updateHistory(seg *segment, ep *zeekEndpoint, orig bool, rel int64, length int) {
	bits := 0
	for _, f := range [...]uint8{flagSYN, flagFIN, flagRST} {
		if seg.has(f) {
			bits++
		}
	}
	h := &c.hist
	switch {
	case bits > 1:
		if seg.has(flagFIN) && seg.has(flagRST) {
			h.check(orig, histFINRST, 'I')
		} else {
			h.check(orig, histMulti, 'Q')
		}
	case seg.has(flagSYN):
		code := byte('S')
		if seg.has(flagACK) {
			code = 'H'
		}
		if !h.check(orig, histSYN, code) && rel != ep.histLastSYN {
			h.add(caseFor(orig, code))
		}
		ep.histLastSYN = rel
	case seg.has(flagFIN):
		if !h.check(orig, histFIN, 'F') && rel+int64(length) != ep.histLastFIN {
			h.add(caseFor(orig, 'F'))
		}
		ep.histLastFIN = rel + int64(length)
	case seg.has(flagRST):
		if !h.check(orig, histRST, 'R') && rel != ep.histLastRST {
			h.add(caseFor(orig, 'R'))
		}
		ep.histLastRST = rel
	case length > 0:
		h.check(orig, histData, 'D')
	case seg.has(flagACK):
		h.check(orig, histACK, 'A')
	}
}

func caseFor(orig bool, code byte) byte {
	if orig {
		return code
	}
	return lower(code)
}

// updateLastSeq is Zeek's update_last_seq; it marks retransmissions ('T').
func (c *conn) updateLastSeq(ep *zeekEndpoint, last seqnum.Value, seg *segment, length int, orig bool) int64 {
	delta := last.Sub(ep.lastSeq)
	switch {
	case (seg.has(flagSYN) || seg.has(flagRST)) && (delta > tooLargeSeqDelta || delta < -tooLargeSeqDelta):
	case seg.has(flagFIN) && ep.lastSeq == ep.startSeq.Add(1):
		ep.setLastSeq(last)
	case ep.state == stateReset:
	case delta > 0:
		ep.setLastSeq(last)
	case length > 0:
		c.hist.scaled(orig, 'T', &ep.rxmtCount, &ep.rxmtThresh)
	}
	return delta
}

func (e *zeekEndpoint) setLastSeq(v seqnum.Value) {
	if v < e.lastSeq && v.Sub(e.lastSeq) > 0 {
		e.seqWraps++
	}
	e.lastSeq = v
}

// updateState is Zeek's endpoint state machine (UpdateStateMachine and the
// Update*State functions), without the events.
func (c *conn) updateState(seg *segment, side Side, ep, peer *zeekEndpoint, length int, deltaLast int64) {
	syn, fin, rst, ack := seg.has(flagSYN), seg.has(flagFIN), seg.has(flagRST), seg.has(flagACK)
	orig := side == Client
	switch ep.state {
	case stateInactive:
		if syn {
			if orig {
				if ack {
					ep.setState(stateSYNACKSent)
				} else {
					ep.setState(stateSYNSent)
				}
			} else {
				if !ack && peer.state == stateSYNACKSent && seg.seq == ep.startSeq {
					// SYN and SYN-ACK captured in reverse order: the
					// other side was the client after all.
					c.flipRoles()
					// After the flip, this endpoint is the client.
					ep, peer = &c.z[Client], &c.z[Server]
					peer.setState(stateEstablished)
				}
				if peer.state == stateSYNSent {
					peer.setState(stateEstablished)
				}
				ep.setState(stateEstablished)
			}
		}
		if fin {
			ep.setState(stateClosed)
		}
		if rst {
			ep.setState(stateReset)
		}
		if ep.state == stateInactive {
			switch {
			case !orig && length == 0 && c.z[Client].state == stateSYNSent:
				// Some stacks ACK a SYN before answering it: not partial.
			case ack && peer.state == stateEstablished:
				ep.setState(stateEstablished)
			default:
				ep.setState(statePartial)
			}
		}
	case stateSYNSent, stateSYNACKSent:
		if fin {
			ep.setState(stateClosed)
		}
		if rst {
			ep.setState(stateReset)
		} else if length > 0 && !syn {
			c.anomaly("data_before_established")
		}
	case stateEstablished, statePartial:
		if syn && ep.state == statePartial && peer.state == stateInactive && !ack {
			ep.setState(stateSYNSent)
		}
		if fin && !rst {
			ep.setState(stateClosed)
			if peer.state == stateReset && peer.prevState == stateClosed {
				// FIN followed by RST from the peer: a normal close.
				peer.setState(stateClosed)
			}
		}
		if rst {
			ep.setState(stateReset)
		}
	case stateClosed:
		if rst && peer.state != stateClosed {
			ep.setState(stateReset)
		}
	case stateReset:
		if length > 0 && !rst {
			c.anomaly("data_after_reset")
		}
	}
}

// flipRoles swaps client and server (Zeek's FlipRoles, history '^').
func (c *conn) flipRoles() {
	conv := c.conv
	conv.Client, conv.Server = conv.Server, conv.Client
	conv.FromClient, conv.FromServer = conv.FromServer, conv.FromClient
	conv.Originator = "syn"
	c.z[0], c.z[1] = c.z[1], c.z[0]
	c.a[0], c.a[1] = c.a[1], c.a[0]
	c.zwOpen[0], c.zwOpen[1] = c.zwOpen[1], c.zwOpen[0]
	for i := range conv.ZeroWindows {
		conv.ZeroWindows[i].Receiver = conv.ZeroWindows[i].Receiver.Other()
	}
	for i := range conv.KeyPackets {
		conv.KeyPackets[i].From = conv.KeyPackets[i].From.Other()
	}
	conv.Handshake = Handshake{}
	// Zeek flips the seen mask and keeps the letters; the '^' tells the
	// reader the roles changed.
	c.hist.seen = c.hist.seen>>16 | c.hist.seen<<16
	if len(c.hist.b) == 0 || c.hist.b[0] != '^' {
		c.hist.b = append([]byte{'^'}, c.hist.b...)
	}
}

func (c *conn) anomaly(name string) {
	if c.conv.Anomalies == nil {
		c.conv.Anomalies = map[string]int64{}
	}
	c.conv.Anomalies[name]++
}

// analyse runs the Wireshark-style sequence analysis for one segment and
// returns the key-packet label it earned, if any.
func (c *conn) analyse(seg *segment, side Side, stamp evidence.Stamp) string {
	s, r := &c.a[side], &c.a[side.Other()]
	t := c.conv.From(side)
	syn, fin, rst, ack := seg.has(flagSYN), seg.has(flagFIN), seg.has(flagRST), seg.has(flagACK)
	segLen := seg.payloadLen
	if syn {
		segLen++
	}
	if fin {
		segLen++
	}
	label := ""
	if !s.seen {
		s.seen = true
		s.isn = seg.seq
		if !syn {
			s.isn = seg.seq - 1
		}
		s.nextSeq = seg.seq
		s.highTime = stamp.Time
	}
	if syn {
		c.learnWindowScale(seg, side)
		if seg.mss > 0 {
			t.MSS = int(seg.mss)
		}
		t.SACKPermitted = t.SACKPermitted || seg.sackPermitted
	}

	// The receiver of this side's data: is it in a zero-window episode?
	peerZW := c.zwOpen[side.Other()] > 0
	switch {
	case rst:
	case segLen == 0 && ack && s.unaValid && seg.seq == s.una-1 && peerZW:
		// Linux's persist timer probe: a bare ACK one byte behind snd_una
		// (tcp_write_wakeup -> tcp_xmit_probe_skb).
		c.zeroWindowProbe(side, t)
		label = "zero-window-probe"
	case seg.payloadLen == 1 && !syn && !fin && peerZW && seg.seq == s.nextSeq:
		// RFC 9293 probe: one byte of new data into a zero window.
		c.zeroWindowProbe(side, t)
		label = "zero-window-probe"
	case seg.payloadLen <= 1 && !syn && !fin && s.nextSeq.Sub(seg.seq) == 1:
		// Wireshark's keep-alive: at most one byte, one behind the next
		// expected sequence number.
		t.KeepAlives++
		label = "keep-alive"
	case segLen > 0 && seg.seq.LessThan(s.nextSeq):
		if syn && seg.seq == s.isn && !ack {
			t.Retransmissions++
			c.conv.Handshake.SYNRetransmissions++
			label = "syn-retransmission"
			break
		}
		if c.fillsHole(s, seg) && stamp.Time.Sub(s.highTime) < c.reorderWindow() {
			t.OutOfOrder++
			if seg.payloadLen > 0 {
				restamp(&t.LastData, &c.lastDataOf[side], stamp)
			}
		} else {
			t.Retransmissions++
			label = "retransmission"
			if i := c.zwOpen[side.Other()]; i > 0 {
				// Data the receiver dropped when its window closed, sent
				// again on the retransmission timer: the sender's way of
				// probing (what Linux does when the window shrank under
				// a segment already in flight).
				c.conv.ZeroWindows[i-1].Probes++
			}
			if c.conflicts(s, seg) {
				t.ConflictingRetransmissions++
				c.anomaly("conflicting_retransmission")
			}
		}
	case segLen > 0:
		if seg.seq.Sub(s.nextSeq) > 0 {
			s.addHole(s.nextSeq, seg.seq)
		}
		s.nextSeq = seg.seq.Add(seqnum.Size(segLen))
		s.highTime = stamp.Time
		if r.winValid && seg.payloadLen > 0 && r.window > 0 && s.unaValid && seg.seq.Add(seqnum.Size(seg.payloadLen)) == s.una.Add(seqnum.Size(r.window)) {
			t.WindowFull++
		}
		if seg.payloadLen > 0 && seg.payloadLen == len(seg.payload) {
			s.remember(seg)
		}
		if seg.payloadLen > 0 {
			restamp(&t.LastData, &c.lastDataOf[side], stamp)
		}
		if seg.payloadLen > 0 && !s.dataSeen {
			s.dataSeen = true
			label = "first-data"
		}
	}
	if fin && !s.finSeen {
		s.finSeen = true
		s.finSeq = seg.seq.Add(seqnum.Size(seg.payloadLen))
	}

	if ack && !rst {
		c.acknowledge(side, seg, stamp)
	}
	if !syn && !rst {
		c.windowAdvert(seg, side, stamp, &label)
	}
	if rst {
		c.endZeroWindows(stamp, "rst")
	}
	return label
}

// reorderWindow is how late a segment may fill a hole and still count as
// reordered rather than retransmitted: Wireshark uses 3 ms unless the RTT
// is known.
func (c *conn) reorderWindow() time.Duration {
	if rtt := c.conv.Handshake.RTT; rtt > 3*time.Millisecond {
		return rtt
	}
	return 3 * time.Millisecond
}

func (c *conn) learnWindowScale(seg *segment, side Side) {
	s := &c.a[side]
	s.scale = seg.wscale
	if seg.has(flagACK) {
		// RFC 7323 section 2.2: scaling is on only when both SYNs carried
		// the option.
		other := &c.a[side.Other()]
		if seg.wscale < 0 || other.scale < 0 {
			s.scale, other.scale = -1, -1
		}
		c.conv.FromClient.WindowScale = int(c.a[Client].scale)
		c.conv.FromServer.WindowScale = int(c.a[Server].scale)
	}
}

// scaledWindow applies side's negotiated shift; SYN windows are never scaled.
func (c *conn) scaledWindow(seg *segment, side Side) int64 {
	w := int64(seg.window)
	if sc := c.a[side].scale; sc > 0 && c.conv.Handshake.SYNACKCount > 0 && !seg.has(flagSYN) {
		w <<= uint(sc)
	}
	return w
}

// acknowledge handles the ACK field of a segment from side: it advances the
// other side's snd_una, counts duplicate ACKs, confirms holes the capture
// missed, and notes acknowledgement of a FIN.
func (c *conn) acknowledge(side Side, seg *segment, stamp evidence.Stamp) {
	s, other := &c.a[side], &c.a[side.Other()]
	pure := seg.payloadLen == 0 && !seg.has(flagSYN) && !seg.has(flagFIN)
	if pure && s.lastAckOK && seg.ack == s.lastAck && seg.window == s.lastWin && other.seen && seg.ack.LessThan(other.nextSeq) && c.zwOpen[side] == 0 {
		c.conv.From(side).DuplicateACKs++
	}
	if pure {
		s.lastAck, s.lastWin, s.lastAckOK = seg.ack, seg.window, true
	}
	if !other.unaValid || other.una.LessThan(seg.ack) {
		other.una, other.unaValid = seg.ack, true
	}
	if !other.seen {
		return
	}
	// Holes below the acknowledgement were data the capture never saw.
	for i := 0; i < len(other.holes); {
		h := other.holes[i]
		if h.end.LessThanEq(seg.ack) {
			c.missed(side.Other(), int64(h.end.Sub(h.start)))
			other.holes = append(other.holes[:i], other.holes[i+1:]...)
			continue
		}
		i++
	}
	if other.nextSeq.LessThan(seg.ack) && !seg.has(flagRST) && !seg.has(flagFIN) {
		gap := seg.ack.Sub(other.nextSeq)
		if other.finSeen || gap > tooLargeSeqDelta {
			return
		}
		c.missed(side.Other(), gap)
		other.nextSeq = seg.ack
	}
}

func (c *conn) missed(of Side, n int64) {
	c.conv.From(of).MissedBytes += n
	ep := &c.z[of]
	c.hist.scaled(of == Client, 'G', &ep.gapCount, &ep.gapThresh)
}

func (s *sender) addHole(start, end seqnum.Value) {
	if len(s.holes) == maxHoles {
		// Keep the newest holes; the oldest one is the least likely to be
		// filled by a late segment.
		s.holes = s.holes[1:]
	}
	s.holes = append(s.holes, hole{start, end})
}

// fillsHole reports whether seg lands in a range never seen before, and
// removes what it fills.
func (c *conn) fillsHole(s *sender, seg *segment) bool {
	start, end := seg.seq, seg.seq.Add(seqnum.Size(seg.payloadLen))
	filled := false
	for i := 0; i < len(s.holes); i++ {
		h := s.holes[i]
		if !start.LessThan(h.end) || !h.start.LessThan(end) {
			continue
		}
		filled = true
		switch {
		case start.LessThanEq(h.start) && h.end.LessThanEq(end):
			s.holes = append(s.holes[:i], s.holes[i+1:]...)
			i--
		case start.LessThanEq(h.start):
			s.holes[i].start = end
		case h.end.LessThanEq(end):
			s.holes[i].end = start
		default:
			s.holes[i].end = start
			if len(s.holes) < maxHoles {
				s.holes = append(s.holes, hole{end, h.end})
			}
		}
	}
	return filled
}

func (s *sender) remember(seg *segment) {
	s.recent[s.recentNext] = sentSegment{seq: seg.seq, n: uint32(seg.payloadLen), hash: payloadDigest(seg.payload)}
	s.recentNext = (s.recentNext + 1) % len(s.recent)
}

// digestEdge is how many bytes at each end of a payload the digest covers:
// hashing every byte of every segment would cost a fifth of the tracker's
// time, and injected or corrupted data changes the edges of a segment in
// practice. A change confined to the middle of a large segment is missed.
const digestEdge = 256

func payloadDigest(b []byte) uint64 {
	if len(b) > 2*digestEdge {
		var h maphash.Hash
		h.SetSeed(payloadSeed)
		h.Write(b[:digestEdge])
		h.Write(b[len(b)-digestEdge:])
		return h.Sum64()
	}
	return maphash.Bytes(payloadSeed, b)
}

// conflicts reports whether a retransmission carries different bytes than
// the original segment with the same sequence number and length.
func (c *conn) conflicts(s *sender, seg *segment) bool {
	if seg.payloadLen == 0 || seg.payloadLen != len(seg.payload) {
		return false
	}
	for _, r := range s.recent {
		if int(r.n) == seg.payloadLen && r.seq == seg.seq {
			return r.hash != payloadDigest(seg.payload)
		}
	}
	return false
}

// windowAdvert tracks the receive window side advertises: zero-window
// episodes and window samples.
func (c *conn) windowAdvert(seg *segment, side Side, stamp evidence.Stamp, label *string) {
	s := &c.a[side]
	w := c.scaledWindow(seg, side)
	s.window, s.winValid = w, true
	t := c.conv.From(side)
	if t.MaxWindow < w {
		t.MaxWindow = w
	}
	if t.MinWindow > w || t.Packets == 1 || (t.MinWindow == 0 && t.ZeroWindowAdverts == 0 && w > 0 && t.MaxWindow == w) {
		t.MinWindow = w
	}
	fin := seg.has(flagFIN)
	switch {
	case w == 0 && !fin:
		t.ZeroWindowAdverts++
		if i := c.zwOpen[side]; i > 0 {
			c.conv.ZeroWindows[i-1].Adverts++
			break
		}
		other := &c.a[side.Other()]
		waiting := int64(0)
		if other.seen && seg.has(flagACK) {
			waiting = max(0, other.nextSeq.Sub(seg.ack))
		}
		c.conv.ZeroWindows = append(c.conv.ZeroWindows, ZeroWindowEpisode{Receiver: side, Start: stamp, Adverts: 1, BytesWaiting: waiting})
		c.zwOpen[side] = len(c.conv.ZeroWindows)
		*label = "zero-window"
	case w > 0 && c.zwOpen[side] > 0:
		ep := &c.conv.ZeroWindows[c.zwOpen[side]-1]
		end := stamp
		ep.End, ep.EndedBy, ep.Duration = &end, "window-update", stamp.Time.Sub(ep.Start.Time)
		c.zwOpen[side] = 0
		*label = "window-reopened"
	}
	c.sampleWindow(seg, side, stamp.Time, w)
}

// restamp sets a per-side "last" stamp, kept in the conn until complete
// (a stamp of its own was a cache miss per packet).
func restamp(field **evidence.Stamp, held *evidence.Stamp, at evidence.Stamp) {
	*held = at
	*field = held
}

// ownStamps gives the record its own copies of the "last" stamps that
// point into the conn.
func (c *conn) ownStamps() {
	for _, t := range [...]*Traffic{&c.conv.FromClient, &c.conv.FromServer} {
		for _, p := range [...]**evidence.Stamp{&t.Last, &t.LastData} {
			if *p != nil {
				own := **p
				*p = &own
			}
		}
	}
}

func (c *conn) zeroWindowProbe(side Side, t *Traffic) {
	t.ZeroWindowProbes++
	if i := c.zwOpen[side.Other()]; i > 0 {
		c.conv.ZeroWindows[i-1].Probes++
	}
}

// endZeroWindows closes every open episode at stamp.
func (c *conn) endZeroWindows(stamp evidence.Stamp, why string) {
	for side, i := range c.zwOpen {
		if i == 0 {
			continue
		}
		ep := &c.conv.ZeroWindows[i-1]
		ep.EndedBy, ep.Duration = why, stamp.Time.Sub(ep.Start.Time)
		if why == "rst" || why == "fin" {
			end := stamp
			ep.End = &end
		}
		c.zwOpen[side] = 0
	}
}

// sampleWindow keeps a point when the window or the bytes in flight
// changed notably; when the series is full, every other point is dropped.
func (c *conn) sampleWindow(seg *segment, side Side, at time.Time, w int64) {
	if c.opts.NoDetail {
		return
	}
	s := &c.a[side]
	inflight := int64(0)
	if other := &c.a[side.Other()]; other.seen && seg.has(flagACK) {
		inflight = max(0, other.nextSeq.Sub(seg.ack))
	}
	if s.sampled {
		last := s.lastSample
		windowMoved := (w == 0) != (last.Window == 0) || abs(w-last.Window) > last.Window/8
		flightMoved := abs(inflight-last.InFlight) > max(last.InFlight/4, 1460)
		if !windowMoved && !flightMoved {
			return
		}
	}
	sample := WindowSample{Time: at, Window: w, InFlight: inflight}
	s.lastSample, s.sampled = sample, true
	series := &c.conv.Windows.Client
	if side == Server {
		series = &c.conv.Windows.Server
	}
	if len(*series) >= c.opts.WindowSampleCap {
		kept := (*series)[:0]
		for i, p := range *series {
			if i%2 == 0 {
				kept = append(kept, p)
			}
		}
		*series = kept
	}
	*series = append(*series, sample)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// handshake records SYNs, SYN-ACKs, the final ACK and a refusal.
func (c *conn) handshake(seg *segment, side Side, stamp evidence.Stamp, label *string) {
	h := &c.conv.Handshake
	syn, ack, rst := seg.has(flagSYN), seg.has(flagACK), seg.has(flagRST)
	switch {
	case syn && !ack && side == Client:
		h.SYNCount++
		if len(h.SYNs) < maxHandshakeMarks {
			h.SYNs = append(h.SYNs, stamp)
		}
		if *label == "" {
			*label = "syn"
		}
	case syn && ack && side == Server:
		h.SYNACKCount++
		if len(h.SYNACKs) < maxHandshakeMarks {
			h.SYNACKs = append(h.SYNACKs, stamp)
		}
		if h.SYNACKCount == 1 && len(h.SYNs) > 0 {
			h.RTT = stamp.Time.Sub(h.SYNs[len(h.SYNs)-1].Time)
		}
		*label = "syn-ack"
		if h.SYNACKCount > 1 {
			*label = "syn-ack-retransmission"
		}
	case rst && side == Server && h.SYNACKCount == 0 && h.SYNCount > 0 && h.RefusedBy == nil:
		refused := stamp
		h.RefusedBy = &refused
	case ack && !syn && !rst && side == Client && h.SYNACKCount > 0 && !h.Completed:
		h.Completed = true
		if seg.payloadLen == 0 && h.ACK == nil {
			at := stamp
			h.ACK = &at
			*label = "handshake-ack"
		}
		if h.RTT > 0 && len(h.SYNACKs) > 0 {
			h.RTT += stamp.Time.Sub(h.SYNACKs[0].Time)
		}
	}
}

// closing records FINs, RSTs and the half-close they open.
func (c *conn) closing(seg *segment, side Side, stamp evidence.Stamp, label *string, duringZeroWindow bool) {
	cl := &c.conv.Closing
	fin, rst := seg.has(flagFIN), seg.has(flagRST)
	if c.conv.Closing.HalfClose != nil {
		hc := cl.HalfClose
		if side != hc.By && hc.Acked == nil && seg.has(flagACK) && c.a[hc.By].finSeen && c.a[hc.By].finSeq.LessThan(seg.ack) {
			at := stamp
			hc.Acked = &at
		}
	}
	if !fin && !rst {
		return
	}
	s := &c.a[side]
	unacked := int64(0)
	if s.unaValid {
		unacked = max(0, s.nextSeq.Sub(s.una))
		if fin && unacked > 0 {
			unacked-- // the FIN itself
		}
	}
	mark := &CloseMark{By: side, Stamp: stamp, Unacked: unacked, DuringZeroWindow: duringZeroWindow || *label == "zero-window"}
	if rst {
		if cl.RSTs[side] == nil {
			cl.RSTs[side] = mark
		}
		*label = "rst"
	} else {
		if cl.FINs[side] == nil {
			cl.FINs[side] = mark
		}
		if *label == "" || *label == "first-data" {
			*label = "fin"
		}
	}
	if cl.First == nil {
		cl.First = mark
	}
	switch hc := cl.HalfClose; {
	case hc == nil && fin && cl.FINs[side.Other()] == nil:
		cl.HalfClose = &HalfClose{By: side, Since: stamp}
	case hc != nil && side != hc.By && fin && hc.PeerFIN == nil:
		at := stamp
		hc.PeerFIN = &at
	case hc != nil && side != hc.By && rst && hc.PeerRST == nil:
		at := stamp
		hc.PeerRST = &at
	}
}

// keyPacket keeps the packet when it tells part of the story.
func (c *conn) keyPacket(seg *segment, side Side, stamp evidence.Stamp, label string) {
	l := &c.last
	l.stamp, l.from, l.flags, l.len = stamp, side, seg.flags, seg.payloadLen
	l.seq, l.ack, l.window = seg.seq.Sub(c.a[side].isn), 0, c.a[side].window
	if seg.has(flagACK) && c.a[side.Other()].seen {
		l.ack = seg.ack.Sub(c.a[side.Other()].isn)
	}
	if seg.has(flagSYN) {
		l.window = int64(seg.window)
	}
	if label == "" || c.opts.NoDetail {
		return
	}
	kp := l.keyPacket(label)
	conv := c.conv
	limit := c.opts.KeyPacketCap
	if len(conv.KeyPackets) < limit {
		switch n := len(conv.KeyPackets); {
		case n == 0:
			// Room for the handshake: a SYN flood's conversations never
			// get further, and a conversation is trimmed to its size
			// when it ends (Trim), so more would be garbage.
			conv.KeyPackets = make([]KeyPacket, 0, min(3, limit))
		case n == 3 && cap(conv.KeyPackets) == 3:
			// Past the handshake: a short conversation has about eight
			// (first data each way, FINs, last).
			conv.KeyPackets = append(make([]KeyPacket, 0, min(8, limit)), conv.KeyPackets...)
		}
		conv.KeyPackets = append(conv.KeyPackets, kp)
		return
	}
	// Full: the first half stays (how it started), the second half is a
	// ring of the most recent (how it ended).
	half := limit / 2
	conv.KeyPackets[half+c.keyRing%(limit-half)] = kp
	c.keyRing++
	conv.KeyPacketsDropped++
}

// flagNames holds every flag combination's name, built once: a key packet
// keeps a shared string instead of allocating one.
var flagNames = func() (out [256]string) {
	names := [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}
	order := [...]int{1, 2, 0, 3, 4, 5, 6, 7} // SYN,RST,FIN,PSH,ACK,... as tools print them
	for f := range out {
		var b []byte
		for _, i := range order {
			if f&(1<<i) != 0 {
				if len(b) > 0 {
					b = append(b, ',')
				}
				b = append(b, names[i]...)
			}
		}
		out[f] = string(b)
	}
	return out
}()

func flagString(f uint8) string { return flagNames[f] }

// complete fills the derived fields when the tracker stops following c.
func (c *conn) complete(reason string) {
	conv := c.conv
	c.ownStamps()
	conv.EndReason = reason
	conv.Duration = conv.End.Sub(conv.Start)
	conv.ConnState = connState(&c.z[Client], &c.z[Server], c.hist.b)
	conv.History = string(c.hist.b)
	conv.FromClient.Bytes = c.z[Client].size(&c.z[Server])
	conv.FromServer.Bytes = c.z[Server].size(&c.z[Client])
	endStamp := evidence.Stamp{Time: conv.End, Ref: conv.LastPacket}
	why := reason
	switch reason {
	case "closed":
		why = "fin"
	case "reset":
		why = "rst"
	}
	c.endZeroWindows(endStamp, why)
	if hc := conv.Closing.HalfClose; hc != nil {
		switch {
		case hc.PeerFIN != nil:
			hc.Duration = hc.PeerFIN.Time.Sub(hc.Since.Time)
		case hc.PeerRST != nil:
			hc.Duration = hc.PeerRST.Time.Sub(hc.Since.Time)
		default:
			hc.Duration = conv.End.Sub(hc.Since.Time)
			hc.OpenAtEnd = true
		}
	}
	if n := len(conv.KeyPackets); !c.opts.NoDetail && (n == 0 || conv.KeyPackets[n-1].Ref != c.last.stamp.Ref) {
		last := c.last.keyPacket("last")
		if n < c.opts.KeyPacketCap {
			conv.KeyPackets = append(conv.KeyPackets, last)
		} else {
			conv.KeyPackets[n-1] = last
			conv.KeyPacketsDropped++
		}
	}
	sort.SliceStable(conv.KeyPackets, func(i, j int) bool {
		a, b := conv.KeyPackets[i], conv.KeyPackets[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Packet < b.Packet
	})
}
