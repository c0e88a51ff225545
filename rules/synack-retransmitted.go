package rules

import (
	"fmt"
	"time"

	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "synack-retransmitted",
		Title:        "Server repeated its SYN-ACK",
		Severity:     High,
		SeverityNote: "medium, high when storm_attempts or more handshakes on one listener had their SYN-ACK repeated in one episode",
		Doc: `The server sent its SYN-ACK again on its own timer (not in answer to a retransmitted SYN): it did not take the client's final ACK. ` +
			`When the client's ACK is in the capture, the server received it and ignored it: Linux drops the ACK that would complete a handshake when the listener's accept queue is full (tcp_check_req, counted in TcpExtListenOverflows) and retries its SYN-ACK (tcp_synack_timer, up to net.ipv4.tcp_synack_retries), while the client already believes it is connected and may be sending its request into the void. ` +
			`When the ACK is not in the capture, the SYN-ACK or the ACK was lost on the path. ` +
			`Handshakes on one listener that fall close together are one incident. When the listener also left SYNs unanswered in the same episode, syn-unanswered reports these handshakes with the storm instead. ` +
			`Trap: a SYN-ACK repeated because the client retransmitted its SYN (the first SYN-ACK was lost) is an answer, not a server retransmission, and does not count.`,
		Params: []Param{
			DurationParam("group_gap", 10*time.Second, "handshakes on one listener closer together than this are one episode, one incident"),
			CountParam("storm_attempts", 5, "handshakes with a repeated SYN-ACK in one episode that make it high severity"),
		},
		DefersTo: []string{"syn-unanswered"},
		Detect:   detectSYNACKRetransmitted,
	})
}

func detectSYNACKRetransmitted(ctx *Context) []Incident {
	p := ctx.Params
	repeated := byServer(ctx.In.Conversations, func(c *flows.Conversation) bool {
		return len(timerSYNACKs(c)) > 0 && ctx.ExplainedBy(c) == ""
	})
	var out []Incident
	for _, server := range sortedEndpoints(repeated) {
		for _, episode := range groupInTime(repeated[server], p.Duration("group_gap"), firstSYNACKTime) {
			out = append(out, repeatedSYNACKs(p, server.String(), episode).done())
		}
	}
	return out
}

func firstSYNACKTime(c *flows.Conversation) time.Time { return c.Handshake.SYNACKs[0].Time }

// ackIgnored reports whether the client's final ACK reached the capture
// before the server repeated its SYN-ACK.
func ackIgnored(c *flows.Conversation) bool {
	ack := c.Handshake.ACK
	return ack != nil && ack.Time.Before(timerSYNACKs(c)[0].Time)
}

func repeatedSYNACKs(p Params, server string, episode []*flows.Conversation) *draft {
	ignored, repeats := 0, 0
	for _, c := range episode {
		if ackIgnored(c) {
			ignored++
		}
		repeats += len(timerSYNACKs(c))
	}
	sev, confidence := Medium, "medium"
	if int64(len(episode)) >= p.Count("storm_attempts") {
		sev = High
	}
	if ignored > 0 {
		confidence = "high"
	}
	d := newDraft(sev, confidence)
	for _, c := range episode {
		d.flow(c)
	}
	first := episode[0]
	if len(episode) == 1 {
		what := "and the client's final ACK never showed in the capture"
		if ignored == 1 {
			what = fmt.Sprintf("although the client's final ACK came %s after the first one", seconds(first.Handshake.ACK.Time.Sub(firstSYNACKTime(first))))
		}
		d.summary("%s sent its SYN-ACK to %s %s %s.", server, first.Client, times(len(first.Handshake.SYNACKs)), what)
	} else {
		d.summary("%s repeated its SYN-ACK %s on %s from %s within %s; %d of the clients had already sent their final ACK.",
			server, times(repeats), plural(len(episode), "handshake"), plural(distinctClients(episode), "client host"),
			seconds(episode[len(episode)-1].Handshake.SYNACKs[0].Time.Sub(firstSYNACKTime(first))), ignored)
	}
	var proof []int
	for _, c := range episode {
		proof = append(proof, d.cite(c.Handshake.SYNACKs[0], "SYN-ACK to %s", c.Client))
		if ackIgnored(c) {
			proof = append(proof, d.cite(*c.Handshake.ACK, "final ACK from %s", c.Client))
		}
		for _, r := range timerSYNACKs(c) {
			proof = append(proof, d.cite(r, "SYN-ACK to %s sent again, +%s", c.Client, seconds(r.Time.Sub(c.Handshake.SYNACKs[0].Time))))
		}
	}
	port := portOf(first.Server)
	if ignored > 0 {
		d.cause(fmt.Sprintf("The accept queue of %s was full: the server received the clients' final ACK and dropped it (Linux tcp_check_req when the queue of connections waiting for accept() is full), then retried its SYN-ACK; meanwhile the client thinks it is connected.", server), proof...)
		d.cause("The server process is slow to call accept() (a busy or blocked accept loop, a saturated worker pool).", proof...)
	} else {
		d.cause("The SYN-ACK or the client's final ACK was lost on the path (the ACK is not in the capture).", proof...)
		d.cause(fmt.Sprintf("The accept queue of %s was full and the capture point did not see the ACKs it dropped.", server), proof...)
	}
	d.next(
		fmt.Sprintf("On %s: ss -lnt 'sport = :%s' and compare Recv-Q (waiting for accept()) with Send-Q (the accept queue limit).", first.Server.Addr(), port),
		"nstat -az TcpExtListenOverflows TcpExtListenDrops twice a few seconds apart: rising counters confirm the overflow.",
		"sysctl net.core.somaxconn and the backlog the server passes to listen() (strace -f -e trace=listen), and how fast it calls accept().",
	)
	return d
}

// times writes "once", "twice", "3 times".
func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}
