package flows

import (
	"net/netip"
	"time"

	"wiremortem/evidence"
)

// Side is one end of a conversation (evidence.Side).
type Side = evidence.Side

const (
	// Client is the side that sent the first SYN (or the side chosen by the
	// originator heuristic when no SYN was captured).
	Client = evidence.Client
	// Server is the other side.
	Server = evidence.Server
)

// Conversation is one TCP connection: from its first packet (ideally a SYN)
// to its close, reset, idle flush, or the end of the capture.
//
// Its JSON form is a stable contract (documented in docs/json.md): fields
// are added, never renamed. The document is written by AppendJSON, which
// a new field must join (TestAppendJSONEveryField fails until it does).
type Conversation struct {
	// ID numbers conversations from 1 in the order of their first packet.
	ID     int            `json:"id"`
	Client netip.AddrPort `json:"client"`
	Server netip.AddrPort `json:"server"`
	// Originator says how the client was chosen: "syn" (it sent the first
	// SYN), "syn-ack" (the first packet captured was the server's SYN-ACK),
	// "listener" (the server address was seen answering SYNs elsewhere in
	// the capture), "port" (Zeek's likely-server-port heuristic) or
	// "first-packet" (the sender of the first packet seen). Anything but
	// "syn" is a heuristic.
	Originator string `json:"originator"`

	Start       time.Time     `json:"start"`
	End         time.Time     `json:"end"`
	Duration    time.Duration `json:"duration_ns"`
	FirstPacket evidence.Ref  `json:"first_packet"`
	LastPacket  evidence.Ref  `json:"last_packet"`

	// ConnState and History are Zeek's conn.log fields, computed with
	// Zeek's rules (base/protocols/conn/main.zeek and the TCP analyzer), so
	// our output can be checked against Zeek's.
	ConnState string `json:"conn_state"`
	History   string `json:"history"`

	Handshake  Handshake `json:"handshake"`
	FromClient Traffic   `json:"from_client"`
	FromServer Traffic   `json:"from_server"`

	ZeroWindows []ZeroWindowEpisode `json:"zero_windows"`
	Closing     Closing             `json:"closing"`

	// EndReason is why the tracker stopped following the conversation:
	// "closed" (FIN both ways), "reset", "idle" (no packet for the idle
	// timeout), "capture-end", "reused" (a new SYN on the same 4-tuple) or
	// "evicted" (the live-conversation cap was hit).
	EndReason string `json:"end_reason"`

	// KeyPackets are the packets that tell the story (handshake, first
	// data, zero windows and probes, retransmissions, FIN, RST), capped;
	// KeyPacketsDropped counts the ones the cap left out.
	KeyPackets        []KeyPacket `json:"key_packets"`
	KeyPacketsDropped int64       `json:"key_packets_dropped,omitempty"`
	// Windows samples each side's advertised receive window and the bytes
	// the other side had in flight towards it, when either changed
	// notably; capped per side by keeping every other sample.
	Windows WindowSeries `json:"windows"`

	// Anomalies counts oddities in Zeek's "weird" spirit: a window scale
	// over 14, a SYN carrying data, FIN and RST in one packet, data after a
	// RST, a SYN on an established connection, and the like.
	Anomalies map[string]int64 `json:"anomalies,omitempty"`
}

// Trim gives back the spare capacity of c's lists (a SYN-only
// conversation keeps 1 of the 8 key packets allocated for a short one),
// for a caller that keeps conversations after they finish. The content is
// unchanged.
func (c *Conversation) Trim() {
	c.KeyPackets = trimmed(c.KeyPackets)
	c.Windows.Client = trimmed(c.Windows.Client)
	c.Windows.Server = trimmed(c.Windows.Server)
	c.ZeroWindows = trimmed(c.ZeroWindows)
	c.Handshake.SYNs = trimmed(c.Handshake.SYNs)
	c.Handshake.SYNACKs = trimmed(c.Handshake.SYNACKs)
}

// trimmed returns s in a right-sized array when a quarter or more of its
// capacity is unused, else s itself.
func trimmed[T any](s []T) []T {
	if cap(s)-len(s) < max(1, cap(s)/4) {
		return s
	}
	if len(s) == 0 {
		return make([]T, 0) // empty, not nil: the JSON stays [] (and s[:0:0] would keep s's array)
	}
	return append(make([]T, 0, len(s)), s...)
}

// From returns the traffic sent by side s.
func (c *Conversation) From(s Side) *Traffic {
	if s == Client {
		return &c.FromClient
	}
	return &c.FromServer
}

// Endpoint returns the address of side s.
func (c *Conversation) Endpoint(s Side) netip.AddrPort {
	if s == Client {
		return c.Client
	}
	return c.Server
}

// Handshake is the three-way handshake as captured (RFC 793 section 3.4).
type Handshake struct {
	// SYNs are every SYN the client sent, retransmissions included (the
	// kernel retransmits after 1 s, then 3 s, 7 s...: tcp_syn_retries);
	// capped at maxHandshakeMarks, SYNCount has the true number.
	SYNs     []evidence.Stamp `json:"syns"`
	SYNCount int64            `json:"syn_count"`
	// SYNRetransmissions counts SYNs that repeated the first one's
	// sequence number: the client's kernel retrying an unanswered SYN.
	SYNRetransmissions int64 `json:"syn_retransmissions"`
	// RetryOf is the ID of the previous conversation on this 4-tuple when
	// this one's first SYN repeated that one's sequence number: the same
	// connection attempt, retried after a RST.
	RetryOf int `json:"retry_of,omitempty"`
	// SYNACKs are the server's answers; more than one means the server
	// retransmitted, typically because the final ACK was lost or, on Linux,
	// dropped because the accept queue was full.
	SYNACKs     []evidence.Stamp `json:"syn_acks"`
	SYNACKCount int64            `json:"syn_ack_count"`
	// ACK is the client's final ACK of the handshake.
	ACK *evidence.Stamp `json:"ack,omitempty"`
	// RefusedBy is the RST that answered a SYN: nothing listening, or
	// tcp_abort_on_overflow=1 with a full accept queue.
	RefusedBy *evidence.Stamp `json:"refused_by,omitempty"`
	Completed bool            `json:"completed"`
	// RTT is the time from the SYN that was answered to its SYN-ACK, plus
	// the SYN-ACK to the final ACK; zero when not measurable.
	RTT time.Duration `json:"rtt_ns,omitempty"`
}

// Traffic is what one side sent.
type Traffic struct {
	Packets int64 `json:"packets"`
	// Bytes is the sequence space the side covered (Zeek's orig_bytes and
	// resp_bytes: acknowledged or seen, SYN and FIN excluded); it includes
	// bytes the capture missed.
	Bytes int64 `json:"bytes"`
	// PayloadBytes adds up the payload of every packet, retransmissions
	// included.
	PayloadBytes int64 `json:"payload_bytes"`
	IPBytes      int64 `json:"ip_bytes"`
	// MissedBytes were acknowledged by the peer but never seen in the
	// capture (Zeek's missed_bytes).
	MissedBytes int64 `json:"missed_bytes"`

	// Last is the last packet this side sent; LastData the last one that
	// carried new payload (not a retransmission, keep-alive or window
	// probe). Idle times ("nothing was said for 60 s, then nginx closed")
	// and "the peer went silent while we retransmitted" come from these.
	Last     *evidence.Stamp `json:"last,omitempty"`
	LastData *evidence.Stamp `json:"last_data,omitempty"`

	// SYNs, FINs and RSTs count packets with those flags.
	SYNs int64 `json:"syns"`
	FINs int64 `json:"fins"`
	RSTs int64 `json:"rsts"`

	Retransmissions int64 `json:"retransmissions"`
	// ConflictingRetransmissions resent a sequence range with different
	// bytes: a broken middlebox, or someone injecting data.
	ConflictingRetransmissions int64 `json:"conflicting_retransmissions"`
	OutOfOrder                 int64 `json:"out_of_order"`
	DuplicateACKs              int64 `json:"duplicate_acks"`
	KeepAlives                 int64 `json:"keep_alives"`
	// ZeroWindowAdverts counts packets from this side advertising a zero
	// receive window (Wireshark's tcp.analysis.zero_window: window 0 on a
	// packet without SYN, FIN or RST).
	ZeroWindowAdverts int64 `json:"zero_window_adverts"`
	// ZeroWindowProbes counts this side's probes into the peer's zero
	// window (RFC 9293 section 3.8.6.1; Linux sends them from
	// tcp_probe_timer as a bare ACK one byte behind snd_una).
	ZeroWindowProbes int64 `json:"zero_window_probes"`
	// WindowFull counts segments that filled the peer's advertised window.
	WindowFull int64 `json:"window_full"`

	// WindowScale is the shift from this side's SYN, -1 when not offered or
	// not negotiated (RFC 7323 section 2.2).
	WindowScale   int   `json:"window_scale"`
	MSS           int   `json:"mss,omitempty"`
	SACKPermitted bool  `json:"sack_permitted,omitempty"`
	MinWindow     int64 `json:"min_window"`
	MaxWindow     int64 `json:"max_window"`
}

// ZeroWindowEpisode is a span during which one side advertised a zero
// receive window: its application stopped reading (recv() not called), its
// receive queue filled, and the other side could send nothing but probes.
type ZeroWindowEpisode struct {
	// Receiver is the side that advertised the zero window.
	Receiver Side           `json:"receiver"`
	Start    evidence.Stamp `json:"start"`
	// End is the first packet from the receiver advertising a non-zero
	// window again; nil when the window never reopened.
	End *evidence.Stamp `json:"end,omitempty"`
	// EndedBy is "window-update", "rst", "fin", or the conversation's
	// end reason when it ended with the window still closed ("idle",
	// "capture-end", "reused", "evicted").
	EndedBy  string        `json:"ended_by"`
	Duration time.Duration `json:"duration_ns"`
	// Adverts counts the receiver's zero-window packets; Probes the
	// sender's attempts during the episode: persist-timer probes, and
	// retransmissions of data the receiver dropped as its window closed.
	Adverts int64 `json:"adverts"`
	Probes  int64 `json:"probes"`
	// BytesWaiting is how many bytes the sender had sent and the receiver
	// had not acknowledged when the episode started (at least what was
	// stuck; the sender's socket may hold more, see ss Send-Q).
	BytesWaiting int64 `json:"bytes_waiting"`
}

// CloseMark is a FIN or RST.
type CloseMark struct {
	By Side `json:"by"`
	evidence.Stamp
	// Unacked is how many bytes By had sent that the peer had not yet
	// acknowledged when this packet left.
	Unacked int64 `json:"unacked"`
	// DuringZeroWindow is set when the packet came while a zero-window
	// episode was open on the conversation.
	DuringZeroWindow bool `json:"during_zero_window,omitempty"`
}

// Closing is how the conversation ended.
type Closing struct {
	// FirstFIN and FirstRST per side: index 0 is the client's.
	FINs [2]*CloseMark `json:"fins"`
	RSTs [2]*CloseMark `json:"rsts"`
	// First is whichever FIN or RST came first.
	First *CloseMark `json:"first,omitempty"`
	// HalfClose is set when one side sent a FIN: how long the other side
	// took to send its own, or that it never did (CLOSE_WAIT on its host).
	HalfClose *HalfClose `json:"half_close,omitempty"`
}

// HalfClose is the span after the first FIN (RFC 9293 section 3.6): the side
// that received it sits in CLOSE_WAIT until its application calls close().
type HalfClose struct {
	// By sent the first FIN; the other side is the one in CLOSE_WAIT.
	By    Side           `json:"by"`
	Since evidence.Stamp `json:"since"`
	// Acked is when the other side acknowledged the FIN.
	Acked *evidence.Stamp `json:"acked,omitempty"`
	// PeerFIN is the other side's FIN, nil when it never came.
	PeerFIN *evidence.Stamp `json:"peer_fin,omitempty"`
	// PeerRST is set when the other side reset instead of closing.
	PeerRST *evidence.Stamp `json:"peer_rst,omitempty"`
	// Duration runs from the first FIN to the peer's FIN or RST, or to the
	// last packet of the conversation when neither came.
	Duration time.Duration `json:"duration_ns"`
	// OpenAtEnd is set when the peer had neither closed nor reset when the
	// tracker stopped following the conversation.
	OpenAtEnd bool `json:"open_at_end"`
}

// KeyPacket is one packet worth showing on a ladder diagram.
type KeyPacket struct {
	evidence.Stamp
	From  Side   `json:"from"`
	Flags string `json:"flags"`
	// Seq and Ack are relative to each side's initial sequence number, as
	// Wireshark shows them.
	Seq    int64 `json:"seq"`
	Ack    int64 `json:"ack"`
	Len    int   `json:"len"`
	Window int64 `json:"window"`
	// Label says why the packet matters: syn, syn-retransmission, syn-ack,
	// handshake-ack, first-data, zero-window, zero-window-probe,
	// window-reopened, retransmission, keep-alive, fin, rst, last.
	Label string `json:"label"`
}

// WindowSample is one point of a receive-window chart.
type WindowSample struct {
	Time time.Time `json:"time"`
	// Window is the advertised receive window, scaled, in bytes.
	Window int64 `json:"window"`
	// InFlight is what the other side had sent and this side had not
	// acknowledged.
	InFlight int64 `json:"in_flight"`
}

// WindowSeries holds the samples of each side's receive window.
type WindowSeries struct {
	Client []WindowSample `json:"client"`
	Server []WindowSample `json:"server"`
}
