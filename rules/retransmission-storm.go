package rules

import (
	"fmt"
	"net/netip"
	"sort"

	"wiremortem/evidence"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "retransmission-storm",
		Title:        "Many segments were sent twice",
		Severity:     High,
		SeverityNote: "medium, high when storm_conversations or more conversations with one server were hit",
		Doc: `A side retransmitted at least min_ratio of the packets it sent, and at least min_retransmissions of them, on one conversation (handshake retransmissions are left to the SYN rules). ` +
			`Conversations with one server are one incident. ` +
			`Retransmissions mean segments or their acknowledgements were lost, or arrived so late that the sender's retransmission timer fired: congestion or a lossy link on the path, a full queue on a middlebox or on the receiver, an MTU black hole (full-size segments lost, small ones passing). ` +
			`When the receiver's duplicate ACKs are many, it saw the gaps itself (fast retransmit, RFC 5681); when there are none, the data or the ACKs were lost after the capture point, or the retransmissions were spurious. ` +
			`Traps: the ratio counts all packets of the side, so a side that mostly acknowledges barely moves it; a capture taken on the sender shows retransmissions the receiver may never have needed. Conversations whose reset or stall another rule tells are left to it.`,
		Params: []Param{
			RatioParam("min_ratio", 0.1, "retransmitted packets as a fraction of all packets the side sent"),
			CountParam("min_retransmissions", 20, "the fewest retransmissions that count, so short conversations with one lost segment do not"),
			CountParam("storm_conversations", 5, "conversations with one server in a storm that make it high severity"),
		},
		DefersTo: []string{"rst-mid-stream", "zero-window-rst", "zero-window-stall"},
		Detect:   detectRetransmissionStorm,
	})
}

// lossy is one side of one conversation that retransmitted a lot.
type lossy struct {
	c       *flows.Conversation
	sender  flows.Side
	retrans int64
	ratio   float64
}

// dataRetransmissions leaves out the handshake: the client's repeated SYNs
// and the server's repeated SYN-ACKs are counted as retransmissions too.
func dataRetransmissions(c *flows.Conversation, s flows.Side) int64 {
	n := c.From(s).Retransmissions
	if s == flows.Client {
		n -= c.Handshake.SYNRetransmissions
	} else {
		n -= max(0, c.Handshake.SYNACKCount-1)
	}
	return max(0, n)
}

func detectRetransmissionStorm(ctx *Context) []Incident {
	p := ctx.Params
	groups := map[netip.AddrPort][]lossy{}
	for _, c := range ctx.In.Conversations {
		if ctx.ExplainedBy(c) != "" {
			continue
		}
		for _, s := range []flows.Side{flows.Client, flows.Server} {
			n, packets := dataRetransmissions(c, s), c.From(s).Packets
			if packets == 0 || n < p.Count("min_retransmissions") {
				continue
			}
			if ratio := float64(n) / float64(packets); ratio >= p.Ratio("min_ratio") {
				groups[c.Server] = append(groups[c.Server], lossy{c: c, sender: s, retrans: n, ratio: ratio})
			}
		}
	}
	var out []Incident
	for _, server := range sortedEndpoints(groups) {
		out = append(out, retransmissionIncident(server, groups[server], p.Count("storm_conversations")).done())
	}
	return out
}

func retransmissionIncident(server netip.AddrPort, group []lossy, storm int64) *draft {
	sort.SliceStable(group, func(i, j int) bool { return group[i].ratio > group[j].ratio })
	convs := map[int]bool{}
	var retrans, packets, dupACKs int64
	for _, l := range group {
		convs[l.c.ID] = true
		retrans += l.retrans
		packets += l.c.From(l.sender).Packets
		dupACKs += l.c.From(l.sender.Other()).DuplicateACKs
	}
	sev := Medium
	if int64(len(convs)) >= storm {
		sev = High
	}
	d := newDraft(sev, "medium")
	worst := group[0]
	if len(convs) == 1 {
		d.summary("%s retransmitted %d of its %d packets (%.0f%%) to %s over %s.",
			capitalize(who(worst.c, worst.sender)), worst.retrans, worst.c.From(worst.sender).Packets, 100*worst.ratio,
			endpointOf(worst.c, worst.sender.Other()), seconds(worst.c.Duration))
	} else {
		d.summary("%d conversations with %s retransmitted %d of %d packets (%.0f%%); the worst, %s, %.0f%%.",
			len(convs), server, retrans, packets, 100*float64(retrans)/float64(packets), who(worst.c, worst.sender), 100*worst.ratio)
	}
	var proof []int
	seen := map[int]bool{}
	for _, l := range group {
		if !seen[l.c.ID] {
			d.flow(l.c)
			seen[l.c.ID] = true
		}
		// A few retransmissions per side are proof enough; the counts are
		// in the summary.
		cited := 0
		for _, kp := range l.c.KeyPackets {
			if kp.From == l.sender && kp.Label == "retransmission" && cited < 3 {
				proof = append(proof, d.cite(kp.Stamp, "retransmission from %s (%d bytes)", who(l.c, l.sender), kp.Len))
				cited++
			}
		}
	}
	if len(proof) == 0 {
		proof = append(proof, d.cite(evidence.Stamp{Time: worst.c.Start, Ref: worst.c.FirstPacket}, "first packet of the conversation"))
	}
	if dupACKs > 0 {
		d.cause(fmt.Sprintf("Packets were lost on the path (congestion, a lossy link, a full queue on a middlebox): the receivers reported the gaps with %s, and the senders resent.", plural(dupACKs, "duplicate ACK")), proof...)
	} else {
		d.cause("Packets or their acknowledgements were lost after the capture point, or acknowledgements came so late that the retransmission timer fired (no duplicate ACKs were seen).", proof...)
	}
	d.cause("An MTU black hole: full-size segments are lost while small ones pass (ICMP fragmentation-needed blocked on the path).", proof...)
	d.cause("The receiver drops packets itself (a full receive queue or NIC ring under load).", proof...)
	d.next(
		fmt.Sprintf("ss -ti dst %s on the sender: retrans, rtt and cwnd of live connections.", server),
		"nstat -az TcpRetransSegs TcpExtTCPLostRetransmit, and ip -s link / ethtool -S for drops and errors on both hosts.",
		fmt.Sprintf("mtr or ping between the hosts for loss; ping -M do -s 1472 %s for the path MTU.", server.Addr()),
	)
	return d
}
