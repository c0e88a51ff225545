// Package reporttest builds the analysis documents the report's tests
// render: a fixed document with the four seed incidents, a large one for
// size and speed, and a hostile one with an XSS corpus planted in every
// string. The documents are hand-made (the report's input is a document,
// not bytes); the conversations follow what the tracker records.
package reporttest

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"wiremortem/analysis"
	"wiremortem/correlate"
	"wiremortem/decoders/http"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/flows/capture"
	"wiremortem/rules"
)

// T0 is when every test document's capture starts.
var T0 = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)

const captureFile = "capture.pcap"

// packet is one line of a conversation script.
type packet struct {
	at    time.Duration // since T0
	from  flows.Side
	flags string
	len   int
	win   int64
	label string
}

// script assembles conversations from packet scripts, numbering packets
// across the whole capture.
type script struct {
	nextPacket int64
	nextID     int
}

func (s *script) stamp(at time.Duration, packet int64) evidence.Stamp {
	return evidence.Stamp{Time: T0.Add(at), Ref: evidence.Ref{Source: captureFile, Packet: packet}}
}

// conversation builds a conversation from its packets (all of them key
// packets): handshake, traffic counts, closing and half-close follow from
// the flags; state and history are given, as Zeek would write them.
func (s *script) conversation(client, server string, state, history, endReason string, pkts []packet) *flows.Conversation {
	s.nextID++
	c := &flows.Conversation{
		ID:         s.nextID,
		Client:     netip.MustParseAddrPort(client),
		Server:     netip.MustParseAddrPort(server),
		Originator: "syn",
		ConnState:  state,
		History:    history,
		EndReason:  endReason,
	}
	c.FromClient.WindowScale, c.FromServer.WindowScale = 7, 7
	var seq [2]int64
	for i, p := range pkts {
		s.nextPacket++
		st := s.stamp(p.at, s.nextPacket)
		if i == 0 {
			c.Start, c.FirstPacket = st.Time, st.Ref
		}
		c.End, c.LastPacket = st.Time, st.Ref
		kp := flows.KeyPacket{Stamp: st, From: p.from, Flags: p.flags, Seq: seq[p.from], Len: p.len, Window: p.win, Label: p.label}
		if strings.Contains(p.flags, "ACK") {
			kp.Ack = seq[p.from.Other()]
		}
		c.KeyPackets = append(c.KeyPackets, kp)
		seq[p.from] += int64(p.len)
		if strings.Contains(p.flags, "SYN") || strings.Contains(p.flags, "FIN") {
			seq[p.from]++
		}
		t := c.From(p.from)
		t.Packets++
		t.PayloadBytes += int64(p.len)
		t.Bytes += int64(p.len)
		t.IPBytes += int64(p.len) + 52
		s.flags(c, p, st)
	}
	c.Duration = c.End.Sub(c.Start)
	if hc := c.Closing.HalfClose; hc != nil {
		switch {
		case hc.PeerFIN != nil:
			hc.Duration = hc.PeerFIN.Time.Sub(hc.Since.Time)
		case hc.PeerRST != nil:
			hc.Duration = hc.PeerRST.Time.Sub(hc.Since.Time)
		default:
			hc.OpenAtEnd = true
		}
	}
	return c
}

// flags records what one packet's flags mean for the handshake and the
// close.
func (s *script) flags(c *flows.Conversation, p packet, st evidence.Stamp) {
	t, h, cl := c.From(p.from), &c.Handshake, &c.Closing
	switch {
	case p.flags == "SYN":
		t.SYNs++
		h.SYNs = append(h.SYNs, st)
		h.SYNCount++
		if h.SYNCount > 1 {
			h.SYNRetransmissions++
		}
	case p.flags == "SYN,ACK":
		t.SYNs++
		h.SYNACKs = append(h.SYNACKs, st)
		h.SYNACKCount++
	case p.label == "handshake-ack":
		at := st
		h.ACK, h.Completed = &at, true
		h.RTT = st.Time.Sub(h.SYNs[0].Time)
	}
	if p.win == 0 && !strings.Contains(p.flags, "RST") {
		t.ZeroWindowAdverts++
	}
	if p.label == "zero-window-probe" {
		t.ZeroWindowProbes++
	}
	if strings.Contains(p.flags, "FIN") {
		t.FINs++
		mark := &flows.CloseMark{By: p.from, Stamp: st}
		if cl.FINs[p.from] == nil {
			cl.FINs[p.from] = mark
		}
		if cl.First == nil {
			cl.First = mark
		}
		switch hc := cl.HalfClose; {
		case hc == nil:
			cl.HalfClose = &flows.HalfClose{By: p.from, Since: st}
		case hc.By != p.from && hc.PeerFIN == nil:
			at := st
			hc.PeerFIN = &at
		}
	}
	if strings.Contains(p.flags, "RST") {
		t.RSTs++
		mark := &flows.CloseMark{By: p.from, Stamp: st, DuringZeroWindow: len(c.ZeroWindows) > 0}
		if cl.RSTs[p.from] == nil {
			cl.RSTs[p.from] = mark
		}
		if cl.First == nil {
			cl.First = mark
		}
		if hc := cl.HalfClose; hc != nil && hc.By != p.from && hc.PeerRST == nil {
			at := st
			hc.PeerRST = &at
		}
	}
}

// handshake is a completed three-way handshake starting at at.
func handshake(at time.Duration) []packet {
	return []packet{
		{at, flows.Client, "SYN", 0, 64240, "syn"},
		{at + 61*time.Microsecond, flows.Server, "SYN,ACK", 0, 65160, "syn-ack"},
		{at + 89*time.Microsecond, flows.Client, "ACK", 0, 502, "handshake-ack"},
	}
}

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

// find returns the key packet of c with the given label, the n-th (from 0)
// when several have it.
func find(c *flows.Conversation, label string, n int) flows.KeyPacket {
	for _, kp := range c.KeyPackets {
		if kp.Label == label {
			if n == 0 {
				return kp
			}
			n--
		}
	}
	panic(fmt.Sprintf("conversation %d has no key packet %q", c.ID, label))
}

func item(st evidence.Stamp, what string) evidence.Item {
	return evidence.Item{Ref: st.Ref, Time: st.Time, What: what}
}

func logItem(file string, line int64, at time.Duration, what string) evidence.Item {
	return evidence.Item{Ref: evidence.Ref{Source: file, Line: line}, Time: T0.Add(at), What: what}
}

func flowOf(c *flows.Conversation) rules.Flow {
	return rules.Flow{Client: c.Client.String(), Server: c.Server.String(), Conversation: c.ID}
}

// Fixed is the document of the golden test and the screenshot: one
// capture plus an nginx error log and a server strace, with the four seed
// incidents: an upgrade never answered, a zero window ended by a reset, a
// SYN storm on a small accept queue, and a CLOSE_WAIT pile-up.
func Fixed() *analysis.Document {
	var s script
	var convs []*flows.Conversation
	var incidents []rules.Incident
	var events []analysis.TimelineEvent

	// Seed 000: the monitor's upgrade request is read and never answered;
	// five seconds later it sends a Close frame and closes.
	ws := s.conversation("10.0.0.5:46407", "10.0.0.9:9501", "SF", "ShADadFf", "closed", append(handshake(0),
		packet{ms(0.412), flows.Client, "PSH,ACK", 178, 502, "first-data"},
		packet{ms(0.430), flows.Server, "ACK", 0, 509, ""},
		packet{ms(5001.234), flows.Client, "PSH,ACK", 4, 502, ""},
		packet{ms(5001.260), flows.Server, "ACK", 0, 509, ""},
		packet{ms(5001.300), flows.Client, "FIN,ACK", 0, 502, "fin"},
		packet{ms(5002.010), flows.Server, "FIN,ACK", 0, 509, "fin"},
		packet{ms(5002.050), flows.Client, "ACK", 0, 502, "last"},
	))
	convs = append(convs, ws)
	get, closeFrame := ws.KeyPackets[3], ws.KeyPackets[5]
	events = append(events, analysis.TimelineEvent{
		Item: item(closeFrame.Stamp, "client sends a WebSocket Close frame (1000) on a connection that was never upgraded"),
		Kind: analysis.EventWSClose, Lane: ws.Server.String(), Conversation: ws.ID,
	})
	incidents = append(incidents, rules.Incident{
		Rule: "ws-upgrade-no-101", Severity: rules.High,
		Title:   "WebSocket upgrade never answered",
		Summary: "WebSocket upgrade on 10.0.0.5:46407 -> 10.0.0.9:9501 got no 101 in 5.0 s; the server read the request (strace fd 2032, line 6) and never wrote; the client gave up with a Close frame (1000) on the un-upgraded connection.",
		Start:   get.Time, End: ws.End,
		Flows: []rules.Flow{flowOf(ws)},
		Evidence: []evidence.Item{
			item(get.Stamp, "GET /ws with Upgrade: websocket (178 bytes)"),
			logItem("server.strace", 4, ms(0.200), "accept4 returns fd 2032 for 10.0.0.5:46407"),
			logItem("server.strace", 6, ms(0.520), "recvfrom(2032) reads the whole upgrade request"),
			item(closeFrame.Stamp, "Close frame 88 02 03 e8 (code 1000), unmasked, 5.0 s later"),
			logItem("server.strace", 11, ms(5002.000), "close(2032) after recvfrom returned 0; no write on fd 2032"),
		},
		Causes: []rules.Cause{
			{Text: "The application read the upgrade request and never answered it: its handshake handler is stuck or failed silently.", Evidence: []int{1, 2, 4}},
			{Text: "Not the accept queue: the kernel completed the handshake and the server accepted and read the connection.", Evidence: []int{0, 1}},
		},
		Next: []string{
			"Trace the server's handshake handler for fd 2032 (Swoole onHandShake/onOpen) and look for an exception or a blocking call.",
			"Leave somaxconn and the listen backlog alone: the connection was accepted.",
		},
		Confidence: "high",
	})

	// Seed 001: an agent behind nginx stops reading; its window closes,
	// nginx probes for a minute, then resets (send_timeout with
	// reset_timedout_connection on).
	zwPackets := append(handshake(ms(1000)),
		packet{ms(1000.300), flows.Client, "PSH,ACK", 212, 502, "first-data"},
		packet{ms(1001.100), flows.Server, "PSH,ACK", 129, 509, ""},
	)
	for i := range 6 {
		zwPackets = append(zwPackets, packet{ms(2000 + 2000*float64(i)), flows.Server, "PSH,ACK", 1448 * 7, 509, ""})
	}
	zwPackets = append(zwPackets, packet{ms(13200), flows.Client, "ACK", 0, 0, "zero-window"})
	probe := ms(13400)
	for i := range 8 {
		zwPackets = append(zwPackets,
			packet{probe, flows.Server, "ACK", 0, 509, "zero-window-probe"},
			packet{probe + ms(0.05), flows.Client, "ACK", 0, 0, ""},
		)
		probe += ms(200) << i
	}
	zwPackets = append(zwPackets, packet{ms(73200), flows.Server, "RST", 0, 0, "rst"})
	zw := s.conversation("10.0.0.31:40112", "10.0.0.2:443", "RSTR", "ShADadR", "reset", zwPackets)
	zwStart := find(zw, "zero-window", 0)
	rst := find(zw, "rst", 0)
	zw.ZeroWindows = []flows.ZeroWindowEpisode{{
		Receiver: flows.Client, Start: zwStart.Stamp, EndedBy: "rst",
		Duration: rst.Time.Sub(zwStart.Time), Adverts: 9, Probes: 8, BytesWaiting: 65535,
	}}
	zw.Closing.RSTs[flows.Server].DuringZeroWindow = true
	zw.Closing.RSTs[flows.Server].Unacked = 65535
	for i, w := range []struct {
		at               float64
		window, inFlight int64
	}{{1000.1, 64256, 0}, {1001.1, 64256, 129}, {4000, 48000, 16000}, {8000, 24000, 40000}, {12000, 6000, 58000}, {13200, 0, 65535}, {43000, 0, 65535}, {73200, 0, 65535}} {
		zw.Windows.Client = append(zw.Windows.Client, flows.WindowSample{Time: T0.Add(ms(w.at)), Window: w.window, InFlight: w.inFlight})
		if i == 0 {
			zw.Windows.Server = append(zw.Windows.Server, flows.WindowSample{Time: T0.Add(ms(w.at)), Window: 65160})
		}
	}
	convs = append(convs, zw)
	upgraded := zw.KeyPackets[4]
	events = append(events,
		analysis.TimelineEvent{Item: item(upgraded.Stamp, "HTTP/1.1 101 Switching Protocols"), Kind: analysis.EventUpgrade101, Lane: zw.Server.String(), Conversation: zw.ID},
		analysis.TimelineEvent{Item: logItem("error.log", 7, ms(73200), "client timed out (110) while proxying upgraded connection"), Kind: analysis.EventLogError, Lane: "error.log", Conversation: zw.ID},
	)
	incidents = append(incidents, rules.Incident{
		Rule: "zero-window-rst", Severity: rules.Critical,
		Title:   "Slow consumer: zero window, then reset",
		Summary: "10.0.0.31:40112 stopped reading: it advertised a zero window for 60.0 s (8 probes, 65,535 bytes waiting) until 10.0.0.2:443 reset the connection; nginx logged a client timeout while proxying the upgraded connection (error.log:7).",
		Start:   zwStart.Time, End: rst.Time,
		Flows: []rules.Flow{flowOf(zw)},
		Evidence: []evidence.Item{
			item(zwStart.Stamp, "10.0.0.31:40112 advertises a zero window"),
			item(find(zw, "zero-window-probe", 0).Stamp, "first zero-window probe from 10.0.0.2:443"),
			item(find(zw, "zero-window-probe", 7).Stamp, "eighth probe, window still zero"),
			item(rst.Stamp, "RST from 10.0.0.2:443 with 65,535 bytes unacknowledged"),
			logItem("error.log", 7, ms(73200), "nginx: client timed out (110) while proxying upgraded connection"),
		},
		Causes: []rules.Cause{
			{Text: "The agent's application stopped calling recv(): its receive queue filled and the kernel closed the window.", Evidence: []int{0, 1, 2}},
			{Text: "nginx gave up after send_timeout and reset the connection (reset_timedout_connection on).", Evidence: []int{3, 4}},
		},
		Next: []string{
			"On the agent host, run ss -tn and look at Recv-Q of 10.0.0.31:40112: a full queue confirms a consumer that does not read.",
			"Profile the agent's message loop; raising nginx timeouts only delays the reset.",
		},
		Confidence: "high",
	})

	// Seed 002: forty short-lived clients connect at once; the listener's
	// accept queue overflows and the kernel drops fifteen SYNs.
	var storm []*flows.Conversation
	var unanswered []rules.Flow
	for i := range 40 {
		at := ms(20000 + 7*float64(i))
		client := fmt.Sprintf("10.0.1.%d:%d", 10+i%20, 51000+i)
		if i%8 == 3 || i%8 == 5 || i%8 == 6 {
			pkts := []packet{{at, flows.Client, "SYN", 0, 64240, "syn"}}
			if i%16 == 3 {
				pkts = append(pkts, packet{at + time.Second, flows.Client, "SYN", 0, 64240, "syn-retransmission"})
			}
			c := s.conversation(client, "10.0.0.9:9000", "S0", "S", "idle", pkts)
			storm = append(storm, c)
			unanswered = append(unanswered, flowOf(c))
			continue
		}
		storm = append(storm, s.conversation(client, "10.0.0.9:9000", "SF", "ShADadFf", "closed", append(handshake(at),
			packet{at + ms(0.3), flows.Client, "PSH,ACK", 64, 502, "first-data"},
			packet{at + ms(1.2), flows.Server, "FIN,ACK", 0, 509, "fin"},
			packet{at + ms(1.4), flows.Client, "FIN,ACK", 0, 502, "fin"},
		)))
	}
	convs = append(convs, storm...)
	first, last := storm[3], storm[len(storm)-2]
	incidents = append(incidents, rules.Incident{
		Rule: "syn-unanswered", Severity: rules.High,
		Title:   "SYN storm: connection attempts dropped by 10.0.0.9:9000",
		Summary: "40 connection attempts to 10.0.0.9:9000 in 273 ms, 15 never answered (38%); the accept queue overflowed and the kernel dropped their SYNs; clients with a 300 ms connect timeout failed.",
		Start:   storm[0].Start, End: last.End,
		Flows: unanswered[:10], FlowsOmitted: len(unanswered) - 10,
		Evidence: []evidence.Item{
			item(first.Handshake.SYNs[0], "first unanswered SYN"),
			item(storm[19].Handshake.SYNs[0], "SYN of 10.0.1.19:51019, never answered"),
			item(storm[3].Handshake.SYNs[1], "SYN retransmitted after 1 s, still unanswered"),
		},
		Causes: []rules.Cause{
			{Text: "The listen backlog (min(backlog, somaxconn)) is smaller than the burst: tcp_conn_request drops SYNs when the accept queue is full.", Evidence: []int{0, 1, 2}},
		},
		Next: []string{
			"ss -lnt 'sport = :9000': compare Recv-Q with Send-Q (the backlog) during a burst.",
			"nstat -az TcpExtListenOverflows TcpExtListenDrops: rising counters confirm it.",
			"Raise the application's listen() backlog and net.core.somaxconn together, or accept faster.",
		},
		Confidence: "medium",
	})

	// Seed 003: the server never closes after its peers' FIN.
	var waiting []rules.Flow
	var leakEvidence []evidence.Item
	var firstLeak time.Time
	for i := range 7 {
		at := ms(30000 + 2000*float64(i))
		pkts := append(handshake(at),
			packet{at + ms(1), flows.Client, "PSH,ACK", 90, 502, "first-data"},
			packet{at + ms(3), flows.Server, "PSH,ACK", 310, 509, ""},
			packet{at + ms(500), flows.Client, "FIN,ACK", 0, 502, "fin"},
			packet{at + ms(500.2), flows.Server, "ACK", 0, 509, ""},
		)
		state, history, reason := "S2", "ShADadF", "capture-end"
		if i == 6 {
			// The healthy twin: it closes 200 ms after the peer.
			pkts = append(pkts, packet{at + ms(700), flows.Server, "FIN,ACK", 0, 509, "fin"}, packet{at + ms(700.1), flows.Client, "ACK", 0, 502, "last"})
			state, history, reason = "SF", "ShADadFf", "closed"
		}
		c := s.conversation(fmt.Sprintf("10.0.0.40:%d", 33000+i), "10.0.0.9:7000", state, history, reason, pkts)
		if i < 6 {
			c.End = T0.Add(ms(75000))
			c.Duration = c.End.Sub(c.Start)
			c.Closing.HalfClose.Duration = c.End.Sub(c.Closing.HalfClose.Since.Time)
			waiting = append(waiting, flowOf(c))
			if firstLeak.IsZero() {
				firstLeak = c.Closing.HalfClose.Since.Time
			}
			leakEvidence = append(leakEvidence, item(c.Closing.HalfClose.Since, fmt.Sprintf("FIN from %s, acknowledged, never answered with a FIN", c.Client)))
		}
		convs = append(convs, c)
	}
	incidents = append(incidents, rules.Incident{
		Rule: "close-wait", Severity: rules.Medium,
		Title:   "CLOSE_WAIT pile-up on 10.0.0.9:7000",
		Summary: "10.0.0.9:7000 left 6 connections half-closed: each peer sent FIN, it acknowledged and never closed (oldest 44.5 s at capture end).",
		Start:   firstLeak, End: T0.Add(ms(75000)),
		Flows:    waiting,
		Evidence: leakEvidence,
		Causes: []rules.Cause{
			{Text: "The server process does not call close() when read() returns 0: a leaked socket per peer.", Evidence: []int{0, 5}},
		},
		Next: []string{
			"ss -tan state close-wait '( sport = :7000 )' on the server: the count grows with every idle peer.",
			"Check the server's read loop and onClose handler: every path that sees EOF must close the socket.",
		},
		Confidence: "high",
	})

	doc := &analysis.Document{
		Tool: analysis.Tool{Name: "wiremortem", Version: "v0.1.0-test",
			CommandLine: []string{"wiremortem", "analyze", "capture.pcap", "--nginx-error", "error.log", "--strace", "server.strace", "-o", "report.html"}},
		Inputs: []analysis.InputFile{
			{Path: captureFile, Kind: analysis.KindCapture, SHA256: strings.Repeat("3b", 32), Size: 2391810,
				Records: s.nextPacket, First: T0, Last: T0.Add(ms(73200)),
				Damage: "capture.pcap: record 1841 at byte 2391790: truncated record; read up to there"},
			{Path: "error.log", Kind: analysis.KindNginxError, SHA256: strings.Repeat("a7", 32), Size: 2048, Records: 12, First: T0.Add(ms(73200)), Last: T0.Add(ms(73200))},
			{Path: "server.strace", Kind: analysis.KindStrace, SHA256: strings.Repeat("5e", 32), Size: 4096, Records: 40, First: T0, Last: T0.Add(ms(5002))},
		},
		Incidents: incidents,
		Warnings: []analysis.Warning{
			{Source: captureFile, Record: 1841, Offset: 2391790, Message: "capture.pcap: record 1841 at byte 2391790: truncated record; read up to there"},
		},
	}
	doc.Inputs[1].Clock = &analysis.ClockAssumption{Zone: "UTC", ZoneSource: "assumed (no --tz given)", EstimateNote: "no record could be paired with a packet"}
	doc.Inputs[2].Clock = &analysis.ClockAssumption{Zone: "UTC", ZoneSource: "assumed (no --tz given)", Date: T0.Format("2006-01-02"), DateSource: "the capture's first day",
		Estimated:    &correlate.SkewEstimate{Offset: -(8*time.Hour + ms(3200)), Matches: 5, Spread: 75 * time.Microsecond},
		EstimateNote: "its times read as local time in a UTC+08:00 zone (pass --tz to say which); its clock ran 3.2s ahead of the capture's",
		Applied:      -(8*time.Hour + ms(3200))}
	doc.Inputs[0].Capture = &capture.Info{Path: captureFile, Format: capture.PCAP, Compression: capture.Uncompressed, LinkType: "Ethernet", Snaplen: 262144}
	finish(doc, convs, decoded(ws, zw), events, T0.Add(ms(75000)))
	return doc
}

// finish fills what analysis.Run derives from the conversations: the
// summary, the capped timeline, the rates and the conversation list.
func finish(doc *analysis.Document, convs []*flows.Conversation, decoded map[int]*http.Conversation, events []analysis.TimelineEvent, end time.Time) {
	doc.Summary = analysis.Summary{Start: T0, End: end, Conversations: len(convs), Incidents: map[string]int{}}
	for _, c := range convs {
		p := c.FromClient.Packets + c.FromServer.Packets
		doc.Summary.Packets.Packets += p
		doc.Summary.Packets.TCP += p
	}
	doc.Summary.Packets.Conversations = int64(len(convs))
	for _, inc := range doc.Incidents {
		doc.Summary.Incidents[inc.Severity.String()]++
	}
	doc.Timeline, doc.TimelineOmitted = analysis.BuildTimeline(convs, events, doc.Incidents, 0)
	doc.Rates = analysis.BuildRates(convs, doc.Summary.Start, doc.Summary.End)
	for _, c := range convs {
		doc.Conversations = append(doc.Conversations, analysis.Conversation{Conversation: c, HTTP: decoded[c.ID]})
	}
	if doc.Warnings == nil {
		doc.Warnings = []analysis.Warning{}
	}
}
