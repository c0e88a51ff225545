package rules

import (
	"time"

	"wiremortem/flows"
)

// ConversationFields is what a user rule's expressions see for one
// conversation: its `when` condition and the ${...} parts of its summary,
// causes and next steps. The names are the expr tags; the doc tags are
// printed in docs/rules.md, so the reference cannot drift from the code.
// Durations compare with duration("1s") or with a threshold; sides are
// "client" or "server"; a field that does not apply is zero or "".
type ConversationFields struct {
	ID         int              `expr:"id" doc:"the conversation's number in this analysis (order of first packet)"`
	Client     string           `expr:"client" doc:"the client endpoint, ip:port ([::1]:443 for IPv6): the side that sent the first SYN"`
	Server     string           `expr:"server" doc:"the server endpoint, ip:port"`
	ClientIP   string           `expr:"client_ip" doc:"the client's address"`
	ClientPort int              `expr:"client_port" doc:"the client's port"`
	ServerIP   string           `expr:"server_ip" doc:"the server's address"`
	ServerPort int              `expr:"server_port" doc:"the server's port"`
	Originator string           `expr:"originator" doc:"how the client was chosen: syn (it sent the first SYN); syn-ack, listener, port or first-packet are heuristics"`
	Start      time.Time        `expr:"start" doc:"the first packet's time"`
	End        time.Time        `expr:"end" doc:"the last packet's time"`
	Duration   time.Duration    `expr:"duration" doc:"from the first packet to the last"`
	ConnState  string           `expr:"conn_state" doc:"Zeek's conn_state: S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH"`
	History    string           `expr:"history" doc:"Zeek's history letters (ShADadFf...)"`
	EndReason  string           `expr:"end_reason" doc:"why the tracker stopped following it: closed, reset, idle, capture-end, reused, evicted"`
	Handshake  HandshakeFields  `expr:"handshake" doc:"the three-way handshake"`
	FromClient SideFields       `expr:"from_client" doc:"what the client sent"`
	FromServer SideFields       `expr:"from_server" doc:"what the server sent"`
	ZeroWindow ZeroWindowFields `expr:"zero_window" doc:"zero-window episodes, both sides"`
	Close      CloseFields      `expr:"close" doc:"how it ended"`
}

// HandshakeFields describe the three-way handshake.
type HandshakeFields struct {
	SYNs               int64         `expr:"syns" doc:"SYNs the client sent, retransmissions included"`
	SYNRetransmissions int64         `expr:"syn_retransmissions" doc:"SYNs that repeated the first"`
	SYNACKs            int64         `expr:"syn_acks" doc:"SYN-ACKs the server sent, repeats included"`
	SYNACKRepeats      int64         `expr:"syn_ack_repeats" doc:"SYN-ACKs the server sent again on its own timer (not answering a new SYN)"`
	Completed          bool          `expr:"completed" doc:"the client's final ACK was seen"`
	Refused            bool          `expr:"refused" doc:"the server answered the SYN with RST"`
	Unanswered         bool          `expr:"unanswered" doc:"SYNs were sent and neither a SYN-ACK nor a RST came"`
	Wait               time.Duration `expr:"wait" doc:"from the first SYN to the first SYN-ACK; 0 when unanswered"`
	RTT                time.Duration `expr:"rtt" doc:"SYN to SYN-ACK plus SYN-ACK to ACK; 0 when not measurable"`
}

// SideFields describe what one side sent.
type SideFields struct {
	Packets             int64         `expr:"packets" doc:"packets sent"`
	Bytes               int64         `expr:"bytes" doc:"sequence space covered (Zeek's orig_bytes/resp_bytes)"`
	PayloadBytes        int64         `expr:"payload_bytes" doc:"payload of every packet, retransmissions included"`
	Retransmissions     int64         `expr:"retransmissions" doc:"retransmitted segments, handshake included"`
	RetransmissionRatio float64       `expr:"retransmission_ratio" doc:"retransmissions / packets (0 to 1)"`
	DuplicateACKs       int64         `expr:"duplicate_acks" doc:"duplicate ACKs sent (the side saw a gap)"`
	KeepAlives          int64         `expr:"keep_alives" doc:"TCP keep-alives sent"`
	OutOfOrder          int64         `expr:"out_of_order" doc:"segments that arrived out of order"`
	ZeroWindowAdverts   int64         `expr:"zero_window_adverts" doc:"packets advertising a zero receive window"`
	ZeroWindowProbes    int64         `expr:"zero_window_probes" doc:"probes sent into the peer's zero window"`
	FINs                int64         `expr:"fins" doc:"packets with FIN"`
	RSTs                int64         `expr:"rsts" doc:"packets with RST"`
	MinWindow           int64         `expr:"min_window" doc:"smallest receive window advertised, bytes (scaled)"`
	MaxWindow           int64         `expr:"max_window" doc:"largest receive window advertised, bytes (scaled)"`
	SilentBeforeEnd     time.Duration `expr:"silent_before_end" doc:"from this side's last packet to the conversation's last packet"`
}

// ZeroWindowFields sum up the zero-window episodes of both sides.
type ZeroWindowFields struct {
	Episodes     int64         `expr:"episodes" doc:"number of zero-window episodes"`
	Longest      time.Duration `expr:"longest" doc:"the longest episode"`
	Receiver     string        `expr:"receiver" doc:"the side that advertised the longest episode's zero window (stopped reading)"`
	Probes       int64         `expr:"probes" doc:"probes sent during all episodes"`
	BytesWaiting int64         `expr:"bytes_waiting" doc:"the most bytes waiting when an episode started"`
	OpenAtEnd    bool          `expr:"open_at_end" doc:"an episode was still open when the conversation ended"`
}

// CloseFields describe how the conversation ended.
type CloseFields struct {
	FirstBy       string        `expr:"first_by" doc:"the side of the first FIN or RST, \"\" when neither came"`
	FirstKind     string        `expr:"first_kind" doc:"fin or rst, \"\" when neither came"`
	ResetBy       string        `expr:"reset_by" doc:"client, server, both or \"\""`
	ResetUnacked  int64         `expr:"reset_unacked" doc:"bytes the first RST's sender had sent and not seen acknowledged"`
	IdleBefore    time.Duration `expr:"idle_before" doc:"silence (no new data) before the first FIN or RST"`
	HalfClosedBy  string        `expr:"half_closed_by" doc:"the side that sent the first FIN while the other had not, \"\" when none"`
	CloseWait     time.Duration `expr:"close_wait" doc:"how long the other side took to answer that FIN with its own FIN or a RST, or until the conversation ended"`
	CloseWaitOpen bool          `expr:"close_wait_open" doc:"the other side had neither closed nor reset when the conversation ended"`
}

// conversationFields fills the fields for one conversation.
func conversationFields(c *flows.Conversation) ConversationFields {
	h := &c.Handshake
	f := ConversationFields{
		ID: c.ID, Client: c.Client.String(), Server: c.Server.String(),
		ClientIP: c.Client.Addr().String(), ClientPort: int(c.Client.Port()),
		ServerIP: c.Server.Addr().String(), ServerPort: int(c.Server.Port()),
		Originator: c.Originator, Start: c.Start, End: c.End, Duration: c.Duration,
		ConnState: c.ConnState, History: c.History, EndReason: c.EndReason,
		Handshake: HandshakeFields{
			SYNs: h.SYNCount, SYNRetransmissions: h.SYNRetransmissions, SYNACKs: h.SYNACKCount,
			SYNACKRepeats: int64(len(timerSYNACKs(c))), Completed: h.Completed,
			Refused:    h.RefusedBy != nil && h.SYNACKCount == 0,
			Unanswered: h.SYNCount > 0 && h.SYNACKCount == 0 && h.RefusedBy == nil,
			Wait:       synWait(c), RTT: h.RTT,
		},
		FromClient: sideFields(c, flows.Client),
		FromServer: sideFields(c, flows.Server),
	}
	for _, ep := range c.ZeroWindows {
		z := &f.ZeroWindow
		z.Episodes++
		z.Probes += ep.Probes
		z.BytesWaiting = max(z.BytesWaiting, ep.BytesWaiting)
		if ep.Duration >= z.Longest {
			z.Longest, z.Receiver = ep.Duration, ep.Receiver.String()
		}
		if ep.EndedBy != "window-update" && ep.EndedBy != "rst" && ep.EndedBy != "fin" {
			z.OpenAtEnd = true
		}
	}
	cl := &c.Closing
	if m := cl.First; m != nil {
		f.Close.FirstBy, f.Close.FirstKind = m.By.String(), "fin"
		last, _, _ := lastActivity(c, m.Time)
		f.Close.IdleBefore = m.Time.Sub(last.Time)
	}
	if r := firstRST(c); r != nil {
		f.Close.ResetUnacked = r.Unacked
		if cl.First == r {
			f.Close.FirstKind = "rst"
		}
		f.Close.ResetBy = r.By.String()
		if cl.RSTs[0] != nil && cl.RSTs[1] != nil {
			f.Close.ResetBy = "both"
		}
	}
	if hc := cl.HalfClose; hc != nil {
		f.Close.HalfClosedBy, f.Close.CloseWait, f.Close.CloseWaitOpen = hc.By.String(), hc.Duration, hc.OpenAtEnd
	}
	return f
}

func sideFields(c *flows.Conversation, s flows.Side) SideFields {
	t := c.From(s)
	f := SideFields{
		Packets: t.Packets, Bytes: t.Bytes, PayloadBytes: t.PayloadBytes, Retransmissions: t.Retransmissions,
		DuplicateACKs: t.DuplicateACKs, KeepAlives: t.KeepAlives, OutOfOrder: t.OutOfOrder,
		ZeroWindowAdverts: t.ZeroWindowAdverts, ZeroWindowProbes: t.ZeroWindowProbes,
		FINs: t.FINs, RSTs: t.RSTs, MinWindow: t.MinWindow, MaxWindow: t.MaxWindow,
	}
	if t.Packets > 0 {
		f.RetransmissionRatio = float64(t.Retransmissions) / float64(t.Packets)
	}
	if t.Last != nil {
		f.SilentBeforeEnd = c.End.Sub(t.Last.Time)
	}
	return f
}
