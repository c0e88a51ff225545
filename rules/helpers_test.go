package rules

import (
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/flows/capture"
	"wiremortem/internal/pcaptest"
)

// t0 is when every constructed conversation's clock starts.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// at is a time offset from t0.
func at(d time.Duration) time.Time { return t0.Add(d) }

// convBuilder writes a flows.Conversation the way the tracker would have
// filled it for a given packet story; times are offsets from t0.
type convBuilder struct {
	c   *flows.Conversation
	pkt int64
}

func conv(id int, client, server string) *convBuilder {
	c := &flows.Conversation{
		ID: id, Client: netip.MustParseAddrPort(client), Server: netip.MustParseAddrPort(server),
		Originator: "syn", EndReason: "capture-end",
	}
	c.FromClient.WindowScale, c.FromServer.WindowScale = -1, -1
	return &convBuilder{c: c, pkt: int64(id) * 1000}
}

func (b *convBuilder) stamp(d time.Duration) evidence.Stamp {
	b.pkt++
	s := evidence.Stamp{Time: at(d), Ref: evidence.Ref{Source: "test.pcap", Packet: b.pkt}}
	c := b.c
	if c.Start.IsZero() || s.Time.Before(c.Start) {
		c.Start, c.FirstPacket = s.Time, s.Ref
	}
	if s.Time.After(c.End) || c.End.IsZero() {
		c.End, c.LastPacket = s.Time, s.Ref
	}
	c.Duration = c.End.Sub(c.Start)
	return s
}

func (b *convBuilder) sent(side flows.Side, s evidence.Stamp) {
	t := b.c.From(side)
	t.Packets++
	if t.Last == nil || !s.Time.Before(t.Last.Time) {
		last := s
		t.Last = &last
	}
}

// syn adds the client's SYNs (the first, then its retransmissions).
func (b *convBuilder) syn(offsets ...time.Duration) *convBuilder {
	h := &b.c.Handshake
	for _, d := range offsets {
		s := b.stamp(d)
		b.sent(flows.Client, s)
		h.SYNs = append(h.SYNs, s)
		h.SYNCount++
		b.c.FromClient.SYNs++
		if h.SYNCount > 1 {
			h.SYNRetransmissions++
			b.c.FromClient.Retransmissions++
		}
	}
	return b
}

// synack adds the server's SYN-ACKs.
func (b *convBuilder) synack(offsets ...time.Duration) *convBuilder {
	h := &b.c.Handshake
	for _, d := range offsets {
		s := b.stamp(d)
		b.sent(flows.Server, s)
		h.SYNACKs = append(h.SYNACKs, s)
		h.SYNACKCount++
		b.c.FromServer.SYNs++
		if h.SYNACKCount > 1 {
			b.c.FromServer.Retransmissions++
		}
	}
	return b
}

// ack adds the client's final handshake ACK.
func (b *convBuilder) ack(d time.Duration) *convBuilder {
	s := b.stamp(d)
	b.sent(flows.Client, s)
	b.c.Handshake.ACK, b.c.Handshake.Completed = &s, true
	return b
}

// handshake is a prompt three-way handshake starting at d.
func (b *convBuilder) handshake(d time.Duration) *convBuilder {
	return b.syn(d).synack(d + time.Millisecond).ack(d + 2*time.Millisecond)
}

// refused answers the SYN with the server's RST.
func (b *convBuilder) refused(d time.Duration) *convBuilder {
	s := b.stamp(d)
	b.sent(flows.Server, s)
	b.c.Handshake.RefusedBy = &s
	b.c.FromServer.RSTs++
	b.c.Closing.RSTs[flows.Server] = &flows.CloseMark{By: flows.Server, Stamp: s}
	b.c.Closing.First = b.c.Closing.RSTs[flows.Server]
	b.c.EndReason = "reset"
	return b
}

// data adds a packet of new payload from side.
func (b *convBuilder) data(side flows.Side, d time.Duration, n int64) *convBuilder {
	s := b.stamp(d)
	b.sent(side, s)
	t := b.c.From(side)
	t.Bytes += n
	t.PayloadBytes += n
	if t.LastData == nil || !s.Time.Before(t.LastData.Time) {
		last := s
		t.LastData = &last
	}
	return b
}

// packets adds n bare packets (ACKs) from side at d, to set packet counts.
func (b *convBuilder) packets(side flows.Side, d time.Duration, n int64) *convBuilder {
	s := b.stamp(d)
	b.sent(side, s)
	b.c.From(side).Packets += n - 1
	return b
}

// retransmit adds retransmissions from side (key packets and counters).
func (b *convBuilder) retransmit(side flows.Side, offsets ...time.Duration) *convBuilder {
	for _, d := range offsets {
		s := b.stamp(d)
		b.sent(side, s)
		b.c.From(side).Retransmissions++
		b.c.KeyPackets = append(b.c.KeyPackets, flows.KeyPacket{Stamp: s, From: side, Flags: "ACK", Len: 1448, Label: "retransmission"})
	}
	return b
}

func (b *convBuilder) closeMark(side flows.Side, d time.Duration, unacked int64) *flows.CloseMark {
	s := b.stamp(d)
	b.sent(side, s)
	m := &flows.CloseMark{By: side, Stamp: s, Unacked: unacked}
	for _, zw := range b.c.ZeroWindows {
		if !zw.Start.Time.After(s.Time) && (zw.End == nil || zw.End.Time.After(s.Time) || zw.EndedBy == "rst") {
			m.DuringZeroWindow = true
		}
	}
	cl := &b.c.Closing
	if cl.First == nil || s.Time.Before(cl.First.Time) {
		cl.First = m
	}
	return m
}

// fin adds side's FIN; the other side's ACK of it comes ackAfter later
// (none when ackAfter < 0).
func (b *convBuilder) fin(side flows.Side, d, ackAfter time.Duration) *convBuilder {
	m := b.closeMark(side, d, 0)
	cl := &b.c.Closing
	cl.FINs[side] = m
	b.c.From(side).FINs++
	b.c.KeyPackets = append(b.c.KeyPackets, flows.KeyPacket{Stamp: m.Stamp, From: side, Flags: "FIN,ACK", Label: "fin"})
	switch hc := cl.HalfClose; {
	case hc == nil:
		hc = &flows.HalfClose{By: side, Since: m.Stamp, OpenAtEnd: true}
		if ackAfter >= 0 {
			s := b.stamp(d + ackAfter)
			b.sent(side.Other(), s)
			hc.Acked = &s
		}
		cl.HalfClose = hc
	case hc.By != side:
		hc.PeerFIN, hc.OpenAtEnd = &m.Stamp, false
		hc.Duration = m.Time.Sub(hc.Since.Time)
		b.c.EndReason = "closed"
	}
	return b
}

// rst adds side's RST with unacked bytes of its own still unacknowledged.
func (b *convBuilder) rst(side flows.Side, d time.Duration, unacked int64) *convBuilder {
	m := b.closeMark(side, d, unacked)
	cl := &b.c.Closing
	if cl.RSTs[side] == nil {
		cl.RSTs[side] = m
	}
	b.c.From(side).RSTs++
	b.c.KeyPackets = append(b.c.KeyPackets, flows.KeyPacket{Stamp: m.Stamp, From: side, Flags: "RST,ACK", Label: "rst"})
	if hc := cl.HalfClose; hc != nil && hc.By != side && hc.PeerRST == nil {
		hc.PeerRST, hc.OpenAtEnd = &m.Stamp, false
		hc.Duration = m.Time.Sub(hc.Since.Time)
	}
	b.c.EndReason = "reset"
	for i := range b.c.ZeroWindows {
		if zw := &b.c.ZeroWindows[i]; zw.End == nil {
			end := m.Stamp
			zw.End, zw.EndedBy, zw.Duration = &end, "rst", m.Time.Sub(zw.Start.Time)
		}
	}
	return b
}

// zeroWindow adds an episode in which receiver advertised a zero window
// from start; end < 0 leaves it open (it ends with the conversation).
func (b *convBuilder) zeroWindow(receiver flows.Side, start, end time.Duration, probes, waiting int64) *convBuilder {
	s := b.stamp(start)
	b.sent(receiver, s)
	ep := flows.ZeroWindowEpisode{Receiver: receiver, Start: s, Adverts: 1, Probes: probes, BytesWaiting: waiting}
	b.c.From(receiver).ZeroWindowAdverts++
	b.c.From(receiver.Other()).ZeroWindowProbes += probes
	b.c.KeyPackets = append(b.c.KeyPackets, flows.KeyPacket{Stamp: s, From: receiver, Flags: "ACK", Label: "zero-window"})
	for i := int64(1); i <= probes; i++ {
		// Probes back off from 200 ms, doubling, as Linux's persist timer.
		off := start + 200*time.Millisecond*time.Duration(1<<min(i-1, 20))
		if end >= 0 && off >= end {
			off = start + (end-start)*time.Duration(i)/time.Duration(probes+1)
		}
		ps := b.stamp(off)
		b.sent(receiver.Other(), ps)
		b.c.KeyPackets = append(b.c.KeyPackets, flows.KeyPacket{Stamp: ps, From: receiver.Other(), Flags: "ACK", Label: "zero-window-probe"})
	}
	if end >= 0 {
		e := b.stamp(end)
		b.sent(receiver, e)
		ep.End, ep.EndedBy, ep.Duration = &e, "window-update", end-start
		b.c.KeyPackets = append(b.c.KeyPackets, flows.KeyPacket{Stamp: e, From: receiver, Flags: "ACK", Label: "window-reopened"})
	}
	b.c.ZeroWindows = append(b.c.ZeroWindows, ep)
	return b
}

// until extends the conversation's last packet to d (a keep-alive, say).
func (b *convBuilder) until(d time.Duration) *convBuilder {
	s := b.stamp(d)
	b.sent(flows.Client, s)
	return b
}

// done fills what the tracker computes when it stops following the
// conversation.
func (b *convBuilder) done() *flows.Conversation {
	c := b.c
	for i := range c.ZeroWindows {
		if zw := &c.ZeroWindows[i]; zw.End == nil && zw.EndedBy == "" {
			zw.EndedBy, zw.Duration = c.EndReason, c.End.Sub(zw.Start.Time)
		}
	}
	if hc := c.Closing.HalfClose; hc != nil && hc.OpenAtEnd {
		hc.Duration = c.End.Sub(hc.Since.Time)
	}
	sort.SliceStable(c.KeyPackets, func(i, j int) bool { return c.KeyPackets[i].Time.Before(c.KeyPackets[j].Time) })
	return c
}

// input gathers conversations; the capture ends at end (an offset).
func input(end time.Duration, convs ...*flows.Conversation) *Input {
	return &Input{Conversations: convs, CaptureStart: t0, CaptureEnd: at(end)}
}

// runRule evaluates one rule (with others it defers to) at its defaults,
// with optional --set overrides.
func runRule(t *testing.T, id string, in *Input, sets ...string) []Incident {
	t.Helper()
	cfg, err := NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if err := ParseSet(cfg, s); err != nil {
			t.Fatal(err)
		}
	}
	var out []Incident
	for _, inc := range Evaluate(in, cfg).Incidents {
		if inc.Rule == id {
			out = append(out, inc)
		}
	}
	return out
}

// flowSet writes an incident's flows as "client>server" sorted, for
// comparing expected incidents by flow set rather than by text.
func flowSet(inc Incident) string {
	var parts []string
	for _, f := range inc.Flows {
		parts = append(parts, f.Client+">"+f.Server)
	}
	return sortedJoin(parts)
}

func sortedJoin(parts []string) string {
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// trackCapture runs the conversation tracker over capture files.
func trackCapture(t testing.TB, paths ...string) *Input {
	t.Helper()
	var convs []*flows.Conversation
	tr := flows.NewTracker(flows.Options{OnDone: func(c *flows.Conversation, _ flows.Sink) { convs = append(convs, c) }})
	src := &timeRange{src: pcaptest.Merge(t, func(e *capture.Error) { t.Errorf("damaged capture: %v", e) }, paths...)}
	if err := tr.Run(src); err != nil {
		t.Fatal(err)
	}
	sort.Slice(convs, func(i, j int) bool { return convs[i].ID < convs[j].ID })
	return &Input{Conversations: convs, CaptureStart: src.first, CaptureEnd: src.last}
}

// timeRange notes the first and last packet time of every packet read,
// TCP or not, as analysis does for the capture's time range.
type timeRange struct {
	src         flows.PacketSource
	first, last time.Time
}

func (r *timeRange) Next(p *capture.Packet) error {
	err := r.src.Next(p)
	if err == nil {
		if r.first.IsZero() || p.Time.Before(r.first) {
			r.first = p.Time
		}
		if p.Time.After(r.last) {
			r.last = p.Time
		}
	}
	return err
}

// checkIncident asserts the parts of an incident every rule must fill.
func checkIncident(t *testing.T, inc Incident) {
	t.Helper()
	if inc.Summary == "" || !strings.HasSuffix(inc.Summary, ".") || strings.Count(inc.Summary, ". ") > 0 {
		t.Errorf("summary is not one sentence: %q", inc.Summary)
	}
	if inc.Start.IsZero() || inc.End.Before(inc.Start) {
		t.Errorf("bad span %v..%v", inc.Start, inc.End)
	}
	if len(inc.Flows) == 0 || len(inc.Evidence) == 0 || len(inc.Causes) == 0 || len(inc.Next) == 0 {
		t.Errorf("incomplete incident: %d flows, %d evidence, %d causes, %d next", len(inc.Flows), len(inc.Evidence), len(inc.Causes), len(inc.Next))
	}
	if len(inc.Causes) > 0 && len(inc.Causes[0].Evidence) == 0 {
		t.Errorf("the first cause cites no evidence: %q", inc.Causes[0].Text)
	}
	for _, c := range inc.Causes {
		for _, i := range c.Evidence {
			if i < 0 || i >= len(inc.Evidence) {
				t.Errorf("cause cites evidence %d of %d", i, len(inc.Evidence))
			}
		}
	}
	switch inc.Confidence {
	case "high", "medium", "low":
	default:
		t.Errorf("confidence %q", inc.Confidence)
	}
}
