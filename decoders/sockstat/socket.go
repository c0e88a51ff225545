package sockstat

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/evidence"
)

// Tool names the program whose output a line came from.
type Tool string

// The tools whose output this package reads.
const (
	ToolSS           Tool = "ss"
	ToolNetstat      Tool = "netstat"
	ToolNetstatStats Tool = "netstat -s"
	ToolNstat        Tool = "nstat"
)

// TCPState is a socket's TCP state, numbered as the kernel numbers them
// (include/net/tcp_states.h).
type TCPState uint8

// The TCP states. ss spells them ESTAB, CLOSE-WAIT, FIN-WAIT-1...; netstat
// ESTABLISHED, CLOSE_WAIT, FIN_WAIT1...; String gives netstat's (the
// kernel's) spelling for both.
const (
	StateUnknown TCPState = iota
	StateEstablished
	StateSynSent
	StateSynRecv
	StateFinWait1
	StateFinWait2
	StateTimeWait
	StateClose
	StateCloseWait
	StateLastAck
	StateListen
	StateClosing
)

var stateNames = [...]string{
	StateUnknown:     "UNKNOWN",
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait1:    "FIN_WAIT1",
	StateFinWait2:    "FIN_WAIT2",
	StateTimeWait:    "TIME_WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
}

// stateSpellings maps both tools' spellings to states. "UNCONN" is what ss
// prints for TCP_CLOSE.
var stateSpellings = map[string]TCPState{
	"ESTAB": StateEstablished, "ESTABLISHED": StateEstablished,
	"SYN-SENT": StateSynSent, "SYN_SENT": StateSynSent,
	"SYN-RECV": StateSynRecv, "SYN_RECV": StateSynRecv,
	"FIN-WAIT-1": StateFinWait1, "FIN_WAIT1": StateFinWait1,
	"FIN-WAIT-2": StateFinWait2, "FIN_WAIT2": StateFinWait2,
	"TIME-WAIT": StateTimeWait, "TIME_WAIT": StateTimeWait,
	"UNCONN": StateClose, "CLOSE": StateClose,
	"CLOSE-WAIT": StateCloseWait, "CLOSE_WAIT": StateCloseWait,
	"LAST-ACK": StateLastAck, "LAST_ACK": StateLastAck,
	"LISTEN":  StateListen,
	"CLOSING": StateClosing,
	"UNKNOWN": StateUnknown,
}

func parseState(s string) (TCPState, bool) {
	st, ok := stateSpellings[s]
	return st, ok
}

func (s TCPState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("TCPState(%d)", uint8(s))
}

// MarshalText writes the state as String does.
func (s TCPState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads either tool's spelling.
func (s *TCPState) UnmarshalText(b []byte) error {
	st, ok := parseState(string(b))
	if !ok {
		return fmt.Errorf("sockstat: unknown TCP state %q", b)
	}
	*s = st
	return nil
}

// Socket is one line of ss or netstat output (with ss's -i line after it).
type Socket struct {
	// Ref is the file and line.
	Ref evidence.Ref `json:"ref"`
	// Time is the snapshot's time (zero when the file has no timestamps).
	Time time.Time `json:"time,omitzero"`
	// TimeHasZone is true when Time came with its zone or offset.
	TimeHasZone bool `json:"time_has_zone"`
	// Tool is the program that printed the line.
	Tool Tool `json:"tool"`
	// Proto is "tcp", "udp" or "raw": netstat's Proto without the "6"
	// (the address says the family), or ss's Netid; ss prints no Netid for
	// one protocol (ss -t), and then it is "tcp".
	Proto string `json:"proto"`
	// State is the TCP state; StateUnknown when the line has none (ss with
	// a state filter, UDP in netstat).
	State TCPState `json:"state,omitzero"`
	// RecvQ is Recv-Q: for a connected socket the bytes received and not
	// yet read by the application; for a listener the connections waiting
	// in its accept queue.
	RecvQ int64 `json:"recv_q"`
	// SendQ is Send-Q: for a connected socket the bytes not yet
	// acknowledged by the peer; for a listener in ss, the accept queue's
	// limit, min(backlog, somaxconn) (netstat shows 0 there).
	SendQ int64 `json:"send_q"`
	// Local is the local address and port. "*" (any) reads as "::" and a
	// port of "*" as 0. An IPv4-mapped address stays mapped as printed
	// (ss writes [::ffff:10.0.0.1], netstat 10.0.0.1 on a tcp6 line):
	// compare Addr().Unmap() to join with packets.
	Local netip.AddrPort `json:"local"`
	// Peer is the remote address and port, read as Local is.
	Peer netip.AddrPort `json:"peer"`
	// Interface is the device a socket is bound to, when ss prints one
	// ("127.0.0.53%lo:53").
	Interface string `json:"interface,omitempty"`
	// Processes are the processes holding the socket (ss -p: all of them
	// with their fds; netstat -p: one, without fd).
	Processes []Process `json:"processes,omitempty"`
	// Timer is the socket's pending timer (ss -o, netstat -o).
	Timer *Timer `json:"timer,omitempty"`
	// UID is the owner's user id (ss -e); nil when not printed.
	UID *uint32 `json:"uid,omitempty"`
	// Inode is the socket's inode (ss -e), the number strace and
	// /proc/PID/fd show as socket:[N]; 0 when not printed.
	Inode uint64 `json:"inode,omitempty"`
	// Info is ss -i's (and -m's) detail line.
	Info *TCPInfo `json:"tcp_info,omitempty"`
	// Extra is the rest of ss -e's text, as printed ("sk:1 cgroup:/ <->").
	Extra string `json:"extra,omitempty"`
}

// Process is a process that holds a socket.
type Process struct {
	// Name is the command name ss prints, or what netstat prints after the
	// pid ("nginx: worker": netstat cuts it to its column).
	Name string `json:"name"`
	// PID is the process id.
	PID int `json:"pid"`
	// FD is the socket's file descriptor in that process, -1 when the tool
	// does not say (netstat).
	FD int `json:"fd"`
}

// TimerKind is what a socket's timer is for.
type TimerKind string

// The timer kinds, named for what they do. ss calls the zero-window probe
// timer "persist", netstat "probe"; the retransmit timer is "on" in both.
const (
	TimerOff             TimerKind = "off"
	TimerRetransmit      TimerKind = "retransmit"
	TimerKeepalive       TimerKind = "keepalive"
	TimerTimeWait        TimerKind = "timewait"
	TimerZeroWindowProbe TimerKind = "zero_window_probe"
	TimerUnknown         TimerKind = "unknown"
)

func timerKind(name string) TimerKind {
	switch name {
	case "off":
		return TimerOff
	case "on":
		return TimerRetransmit
	case "keepalive":
		return TimerKeepalive
	case "timewait":
		return TimerTimeWait
	case "persist", "probe":
		return TimerZeroWindowProbe
	}
	return TimerUnknown
}

// Timer is a socket's pending timer.
type Timer struct {
	// Kind is what the timer is for.
	Kind TimerKind `json:"kind"`
	// Name is the timer's name as printed ("on", "persist", "probe").
	Name string `json:"name"`
	// Expires is the time left until it fires.
	Expires time.Duration `json:"expires_ns"`
	// Retransmits is the retransmission (or zero-window probe backoff)
	// count the tool prints.
	Retransmits int `json:"retransmits"`
	// Probes is netstat's third number: keepalive or zero-window probes
	// sent (ss does not print it).
	Probes int `json:"probes,omitempty"`
}

// TCPInfo is the detail line ss -i (and -m) prints under a socket: kept as
// text, with the numbers rules use read out.
type TCPInfo struct {
	// Raw is the line as printed, trimmed.
	Raw string `json:"raw"`
	// RTO is the retransmission timeout.
	RTO time.Duration `json:"rto_ns,omitempty"`
	// RTT and RTTVar are the smoothed round-trip time and its variation.
	RTT    time.Duration `json:"rtt_ns,omitempty"`
	RTTVar time.Duration `json:"rttvar_ns,omitempty"`
	// CWnd is the congestion window in segments.
	CWnd int64 `json:"cwnd,omitempty"`
	// SendWindow is the peer's advertised window (snd_wnd), in bytes.
	SendWindow int64 `json:"snd_wnd,omitempty"`
	// Unacked is the number of segments sent and not acknowledged.
	Unacked int64 `json:"unacked,omitempty"`
	// Retrans is the number of segments being retransmitted now, and
	// RetransTotal over the connection's life ("retrans:1/5").
	Retrans      int64 `json:"retrans,omitempty"`
	RetransTotal int64 `json:"retrans_total,omitempty"`
	// Lost is the number of segments considered lost.
	Lost int64 `json:"lost,omitempty"`
	// Backoff is the exponential backoff count of the retransmit or probe
	// timer.
	Backoff int64 `json:"backoff,omitempty"`
	// LastSend, LastRecv and LastAck are how long ago data was last sent,
	// data was last received, and an ACK was last received.
	LastSend time.Duration `json:"lastsnd_ns,omitempty"`
	LastRecv time.Duration `json:"lastrcv_ns,omitempty"`
	LastAck  time.Duration `json:"lastack_ns,omitempty"`
	// BytesSent, BytesAcked and BytesReceived count the connection's bytes.
	BytesSent     int64 `json:"bytes_sent,omitempty"`
	BytesAcked    int64 `json:"bytes_acked,omitempty"`
	BytesReceived int64 `json:"bytes_received,omitempty"`
	// NotSent is the bytes queued and not yet sent.
	NotSent int64 `json:"notsent,omitempty"`
}

// parseEndpoint reads an address as ss or netstat prints it: "10.0.0.1:80",
// "[::1]:443", "::ffff:1.2.3.4:80" (netstat), "*:*", "0.0.0.0:*",
// "127.0.0.53%lo:53", "[fe80::1]%eth0:123". It returns the interface named
// after "%".
func parseEndpoint(s string) (netip.AddrPort, string, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, "", false
	}
	host, portText := s[:i], s[i+1:]
	if host == "" {
		return netip.AddrPort{}, "", false
	}
	var port uint16
	if portText != "*" {
		n, ok := logline.ParseUint(portText, 65535)
		if !ok {
			return netip.AddrPort{}, "", false
		}
		port = uint16(n)
	}
	var iface string
	if j := strings.LastIndexByte(host, '%'); j >= 0 && (host[0] != '[' || j > strings.IndexByte(host, ']')) {
		host, iface = host[:j], host[j+1:]
	}
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if host == "*" {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), port), iface, true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, "", false
	}
	if z := a.Zone(); z != "" {
		a, iface = a.WithZone(""), z
	}
	return netip.AddrPortFrom(a, port), iface, true
}

func parseInt64(s string) (int64, bool) {
	n, ok := logline.ParseUint(s, 1<<63-1)
	return int64(n), ok
}
