package rules

import (
	"fmt"
	"time"

	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:       "rst-mid-stream",
		Title:    "Connection reset with data in flight",
		Severity: Medium,
		Doc: `An established conversation ended in a RST while data was still moving: the side that reset had sent data the other side never acknowledged, or the RST came right after new data (within active_within) before that side had closed. ` +
			`Either its application aborted (close() with unread data in the receive queue sends RST instead of FIN, RFC 2525 section 2.17; SO_LINGER 0; a crash), or the kernel gave up on a peer that stopped answering (retransmissions without an acknowledgement until net.ipv4.tcp_retries2 or TCP_USER_TIMEOUT), or a middlebox injected the RST. ` +
			`When the peer fell silent while the resetting side retransmitted, the summary says for how long and how many retransmissions. ` +
			`Traps: many clients close with RST as a matter of course (SO_LINGER 0, browsers, health checks) after the exchange is over; a RST after a quiet spell or after both FINs is not counted. Resets that zero-window-rst, close-wait or idle-timeout-teardown explain are left to them.`,
		Params: []Param{
			DurationParam("active_within", time.Second, "a RST this soon after the last new data, from a side that had not sent FIN, is mid-stream"),
		},
		DefersTo: []string{"zero-window-rst", "close-wait", "idle-timeout-teardown"},
		Detect:   detectRSTMidStream,
	})
}

func detectRSTMidStream(ctx *Context) []Incident {
	var out []Incident
	for _, c := range ctx.In.Conversations {
		if ctx.ExplainedBy(c) != "" {
			continue
		}
		if d := midStreamReset(c, ctx.Params.Duration("active_within")); d != nil {
			out = append(out, d.done())
		}
	}
	return out
}

func midStreamReset(c *flows.Conversation, activeWithin time.Duration) *draft {
	rst := firstRST(c)
	if rst == nil || c.Handshake.RefusedBy != nil || (sentSYN(c) && c.Handshake.SYNACKCount == 0) {
		return nil
	}
	if c.FromClient.PayloadBytes+c.FromServer.PayloadBytes == 0 {
		return nil
	}
	fins := c.Closing.FINs
	if fins[0] != nil && fins[1] != nil && fins[0].Time.Before(rst.Time) && fins[1].Time.Before(rst.Time) {
		return nil
	}
	resetter, peer := rst.By, rst.By.Other()
	last, lastFrom, hadData := lastActivity(c, rst.Time)
	closedFirst := fins[resetter] != nil && fins[resetter].Time.Before(rst.Time)
	dataLost := rst.Unacked > 0
	abrupt := hadData && rst.Time.Sub(last.Time) <= activeWithin && !closedFirst
	if !dataLost && !abrupt {
		return nil
	}

	// Did the peer fall silent while the resetting side kept retrying?
	var silentFor time.Duration
	var retries []flows.KeyPacket
	if pl := c.From(peer).Last; pl != nil && pl.Time.Before(rst.Time) {
		retries = keyPacketsBetween(c, resetter, pl.Time, rst.Time, "retransmission")
		if len(retries) > 0 {
			silentFor = rst.Time.Sub(pl.Time)
		}
	}
	confidence := "medium"
	if silentFor > 0 {
		confidence = "high"
	}
	d := newDraft(Medium, confidence)
	d.flow(c)
	// Key packets are capped (the latest kept): with some dropped, the
	// retransmissions counted are a lower bound.
	retried := times(len(retries))
	if c.KeyPacketsDropped > 0 {
		retried = "at least " + retried
	}
	resetBy, other := who(c, resetter), who(c, peer)
	reset := d.cite(rst.Stamp, "RST from %s%s", resetBy, unackedText(rst))
	switch {
	case silentFor > 0:
		d.summary("%s reset its connection with %s with %s unacknowledged, after the %s had been silent for %s while the %s retransmitted %s.",
			capitalize(resetBy), other, bytesText(rst.Unacked), peer, seconds(silentFor), resetter, retried)
	case dataLost:
		d.summary("%s reset its connection with %s with %s still unacknowledged, %s after the last data.",
			capitalize(resetBy), other, bytesText(rst.Unacked), seconds(rst.Time.Sub(last.Time)))
	default:
		d.summary("%s reset its connection with %s %s after data from the %s, before either side closed.",
			capitalize(resetBy), other, seconds(rst.Time.Sub(last.Time)), lastFrom)
	}
	lastData := d.cite(last, "last new data, from the %s", lastFrom)

	if silentFor > 0 {
		quiet := d.cite(*c.From(peer).Last, "last packet from %s", other)
		first := d.cite(retries[0].Stamp, "retransmission from the %s", resetter)
		final := d.cite(retries[len(retries)-1].Stamp, "retransmission from the %s, +%s", resetter, seconds(retries[len(retries)-1].Time.Sub(retries[0].Time)))
		d.cause(fmt.Sprintf("The %s stopped answering: nothing came from it for %s while the %s retransmitted %s without an acknowledgement (host down, network path lost, or a NAT or firewall that forgot the connection), and the %s gave up (Linux after net.ipv4.tcp_retries2, about 15 minutes by default; sooner with TCP_USER_TIMEOUT; Windows after 5 retransmissions).",
			peer, seconds(silentFor), resetter, retried, resetter), quiet, first, final, reset)
		if n := len(c.ZeroWindows); n > 0 && c.ZeroWindows[0].Receiver == peer {
			zw := d.cite(c.ZeroWindows[0].Start, "zero window advertised by %s", other)
			d.cause(fmt.Sprintf("Earlier the %s had advertised a zero window %s: it was falling behind in reading before it went silent.", peer, times(n)), zw)
		}
	} else if dataLost {
		d.cause(fmt.Sprintf("The %s's application aborted the connection with data still in flight (SO_LINGER 0, a crash, a proxy or application timeout): %s it had sent were never acknowledged.", resetter, bytesText(rst.Unacked)), reset, lastData)
	} else {
		d.cause(fmt.Sprintf("The %s closed its socket while data was arriving or still unread, which makes the kernel send RST instead of FIN (RFC 2525 section 2.17): its application gave up on the request, hit an error or crashed.", resetter), lastData, reset)
		d.cause(fmt.Sprintf("The %s's application aborts on purpose (SO_LINGER 0): a proxy or load balancer enforcing a limit.", resetter), reset)
	}
	d.cause("A middlebox (firewall, load balancer, IDS) injected the RST: compare its TTL and IP ID with the other packets of that side (Wireshark: ip.ttl).", reset)
	d.next(fmt.Sprintf("The logs of the application at %s around %s: an error, a timeout or a restart.", c.Endpoint(resetter), rst.Time.UTC().Format("15:04:05.000")))
	if silentFor > 0 {
		d.next(
			fmt.Sprintf("Was %s up and reachable then? Check NAT and conntrack timeouts on the path (sysctl net.netfilter.nf_conntrack_tcp_timeout_established).", c.Endpoint(peer).Addr()),
			fmt.Sprintf("sysctl net.ipv4.tcp_retries2 on %s, and ss -ti dst %s during a stall (retrans, backoff).", c.Endpoint(resetter).Addr(), c.Endpoint(peer)),
		)
	}
	d.next("In Wireshark, compare the RST's ip.ttl with the same side's earlier packets: a different TTL means a middlebox sent it.")
	return d
}
