package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// SchemaVersion is the version of the facts.json layout. Fields are added,
// never renamed or removed; a change that breaks readers bumps it.
const SchemaVersion = 1

// Facts is what the lab knows about one scenario it ran: what it planted,
// which conversations it made (it chose or read back every address), and
// which files it wrote. It is written as facts.json beside the artifacts and
// is the ground truth the analyzers are tested against. Nothing in it is
// inferred from the capture.
type Facts struct {
	Schema      int    `json:"schema"`
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	// Seed names the postmortem (../shared/seeds/NNN_*.txt) the scenario
	// reproduces, if any.
	Seed string `json:"seed,omitempty"`
	// HealthyTwin is true when the scenario is traffic of an incident's
	// shape that must fire no rule at all; TwinOf names that incident's
	// scenario.
	HealthyTwin bool   `json:"healthy_twin"`
	TwinOf      string `json:"twin_of,omitempty"`

	Host  Host  `json:"host"`
	Clock Clock `json:"clock"`

	Files         []File         `json:"files"`
	Processes     []Process      `json:"processes,omitempty"`
	Conversations []Conversation `json:"conversations"`
	Incidents     []Incident     `json:"incidents"`
	Joins         Joins          `json:"joins"`
	// Counters are kernel counters the lab read itself (from /proc) before
	// and after the traffic.
	Counters []Counter `json:"counters,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
}

// Host describes the machine the scenario ran on.
type Host struct {
	Kernel string `json:"kernel"`
	// Sysctls holds every sysctl the lab read, by dotted name
	// ("net.core.somaxconn"), with its value as the kernel printed it.
	Sysctls map[string]string `json:"sysctls,omitempty"`
}

// Clock says how to read the time stamps in the scenario's files.
// Captures are always UTC (pcap time stamps are seconds since the epoch).
type Clock struct {
	// TimeZone is the IANA zone (the TZ environment variable) every log of
	// the scenario was written in: nginx's $time_local and error log,
	// strace -t/-tt time of day, the ss watch loop's date lines.
	TimeZone string `json:"time_zone"`
	// UTCOffset is TimeZone's offset at Start, like "+08:00".
	UTCOffset string `json:"utc_offset"`
	// Date is the local date (YYYY-MM-DD, in TimeZone) at Start, for
	// sources that print a time of day only (strace -tt).
	Date string `json:"date"`
	// Start and End bound the scenario's traffic on the lab's clock (UTC);
	// every packet and log line of the scenario falls inside.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// File kinds.
const (
	KindPcap        = "pcap"
	KindPcapng      = "pcapng"
	KindNginxAccess = "nginx-access"
	KindNginxError  = "nginx-error"
	KindNginxConf   = "nginx-conf"
	KindStrace      = "strace"
	KindSS          = "ss"          // watch loop of `ss -tanoi`: date lines, then ss output
	KindNetstatS    = "netstat-s"   // `netstat -s` output
	KindNstat       = "nstat"       // `nstat -asz` output
	KindClientLog   = "client-log"  // the lab's own client program log, one event per line
	KindListenState = "ss-listen"   // `ss -ltn` output (listeners with their accept queues)
	KindNetstatAnt  = "netstat-ant" // `netstat -anot` output, kept to the scenario's lines
)

// File is one artifact in the scenario directory.
type File struct {
	// Name is relative to the scenario directory.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Compression is "gzip" or "zstd" when the file is compressed; Kind
	// says what is inside.
	Compression string `json:"compression,omitempty"`
	// Command is the command line that wrote the file (for captures:
	// tcpdump, dumpcap, mergecap...).
	Command []string `json:"command,omitempty"`

	// Capture files.
	Interfaces []string `json:"interfaces,omitempty"` // "lo", "any"
	LinkTypes  []string `json:"link_types,omitempty"` // tcpdump names: EN10MB, LINUX_SLL2
	Filter     string   `json:"filter,omitempty"`     // BPF filter the capture used
	Snaplen    int      `json:"snaplen,omitempty"`
	// Packets is the packet count the capture tool reported on exit
	// (tcpdump's "N packets captured"), when it reported one.
	Packets int `json:"packets,omitempty"`
	// Rotation groups the parts of one rotated capture (tcpdump -C):
	// Set names the capture, Part is 0 for the first file.
	Rotation *Rotation `json:"rotation,omitempty"`

	// nginx access logs: the log_format directive's format string, as
	// nginx was configured, and its name.
	LogFormatName string `json:"log_format_name,omitempty"`
	LogFormat     string `json:"log_format,omitempty"`
	// nginx error logs: the error_log level.
	LogLevel string `json:"log_level,omitempty"`

	// strace files: the flags strace ran with, and the traced process.
	StraceFlags []string `json:"strace_flags,omitempty"`
	Process     string   `json:"process,omitempty"` // a Process.Name

	// TimeZone overrides Clock.TimeZone for this file, when set.
	TimeZone string `json:"time_zone,omitempty"`
}

// Rotation places a file within a rotated capture.
type Rotation struct {
	Set  string `json:"set"`
	Part int    `json:"part"`
}

// Process is a program the lab ran whose own identity appears in the logs:
// a traced server (strace -f prints thread ids) or nginx.
type Process struct {
	Name string `json:"name"`
	Role string `json:"role"`
	PID  int    `json:"pid"`
	// TIDs are the process's thread ids as read from /proc/PID/task just
	// before it exited: strace -f prints a thread id, not the process id,
	// on each line.
	TIDs []int `json:"tids,omitempty"`
	// Listen is the address the process listened on, if it did.
	Listen string `json:"listen,omitempty"`
	// Backlog is the backlog argument the process passed to listen(2),
	// when the lab chose it.
	Backlog int `json:"backlog,omitempty"`
}

// Handshake outcomes the lab observed from the connecting side.
const (
	HandshakeCompleted  = "completed"  // connect(2) returned success
	HandshakeRefused    = "refused"    // connect(2) failed with ECONNREFUSED (SYN answered by RST)
	HandshakeUnanswered = "unanswered" // connect(2) timed out: no SYN-ACK before the client's deadline
)

// Who ends a conversation.
const (
	SideClient = "client"
	SideServer = "server"
)

// How a side ends a conversation.
const (
	CloseFIN = "fin" // close(2) or shutdown(SHUT_WR) with nothing unread: FIN
	CloseRST = "rst" // close(2) with SO_LINGER 0, or by the kernel: RST
)

// Conversation is one TCP connection the lab made, seen from the lab's side.
// Client is the side that sent the SYN.
type Conversation struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	// Client and Server are "ip:port" ("[::1]:8080" for IPv6). A port of 0
	// means the lab cannot know it: the kernel of a program the lab does
	// not control (nginx connecting to an upstream) chose it and no peer of
	// the lab saw it.
	Client string `json:"client"`
	Server string `json:"server"`
	// Files names the captures (File.Name) that hold the conversation.
	Files []string `json:"files,omitempty"`

	Handshake string `json:"handshake"`
	// ConnState is the Zeek conn_state the capture must yield, set only
	// where the lab is certain of it (a refused SYN is REJ, a clean close
	// of both sides after a completed handshake is SF, a lone SYN is S0).
	ConnState string `json:"conn_state,omitempty"`
	// Closes lists, in the order the lab made them happen, each side's
	// end of the conversation. A side missing from the list never closed
	// while the capture ran.
	Closes []Close `json:"closes,omitempty"`
	// OpenAtEnd is true when neither side had closed when the capture
	// stopped.
	OpenAtEnd bool `json:"open_at_end,omitempty"`

	// Bytes the application on each side wrote (payload, not headers).
	ClientBytes int64 `json:"client_bytes"`
	ServerBytes int64 `json:"server_bytes"`

	HTTP       []HTTPExchange `json:"http,omitempty"`
	Upgrade    *Upgrade       `json:"upgrade,omitempty"`
	WebSocket  *WebSocket     `json:"websocket,omitempty"`
	ZeroWindow *ZeroWindow    `json:"zero_window,omitempty"`

	// Start is when the client called connect; End when the last side the
	// lab controls closed (lab clock, UTC).
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// Close is one side ending its half of a conversation.
type Close struct {
	By  string    `json:"by"`          // SideClient or SideServer
	How string    `json:"how"`         // CloseFIN or CloseRST
	At  time.Time `json:"at,omitzero"` // lab clock, just before the call; zero when the lab did not time it
}

// HTTPExchange is one HTTP request and its response (Status 0: none came).
type HTTPExchange struct {
	Method string `json:"method"`
	URI    string `json:"uri"`
	Status int    `json:"status"`
}

// Upgrade verdicts, as decoders/http names them.
const (
	UpgradeOK         = "ok"
	UpgradeNoResponse = "no-response"
	UpgradeRejected   = "rejected"
	UpgradeBadAccept  = "bad-accept"
)

// Upgrade is a WebSocket upgrade handshake the lab made.
type Upgrade struct {
	Verdict string `json:"verdict"`
	Status  int    `json:"status,omitempty"`
	// AnswerDelay is how long the server (or the lab's fault) held the
	// response back, in seconds; ClientWait is how long the client was
	// willing to wait for it.
	AnswerDelay float64 `json:"answer_delay_s,omitempty"`
	ClientWait  float64 `json:"client_wait_s,omitempty"`
	// FramesWithoutUpgrade are raw bytes the client sent after giving up,
	// on the connection that was never upgraded (hex).
	FramesWithoutUpgrade string `json:"frames_without_upgrade,omitempty"`
}

// WebSocket is what the lab's peers said after a 101.
type WebSocket struct {
	// Extension is the negotiated Sec-WebSocket-Extensions value, if any.
	Extension       string `json:"extension,omitempty"`
	ContextTakeover bool   `json:"context_takeover,omitempty"`
	// Messages in the order they were sent.
	Messages []WSMessage `json:"messages,omitempty"`
	Pings    int         `json:"pings,omitempty"` // pings sent by the client, each answered by a pong
	// Close is the close handshake, nil when the TCP connection ended
	// without one.
	Close *WSClose `json:"close,omitempty"`
}

// WSMessage is one data message.
type WSMessage struct {
	From   string `json:"from"`   // SideClient or SideServer
	Opcode string `json:"opcode"` // "text" or "binary"
	Length int    `json:"length"` // payload length before compression
	// Fragments is the number of frames the message was sent in; 0 when
	// the lab cannot know (a compressed message leaves as the deflate
	// writer emits output).
	Fragments  int  `json:"fragments"`
	Compressed bool `json:"compressed,omitempty"`
}

// WSClose is a WebSocket close handshake.
type WSClose struct {
	By       string `json:"by"`
	Code     int    `json:"code"`
	Reason   string `json:"reason,omitempty"`
	Answered bool   `json:"answered"`
}

// ZeroWindow is a receiver the lab made stop (or slow) reading.
type ZeroWindow struct {
	Receiver string `json:"receiver"` // SideClient or SideServer
	// RcvBuf is the SO_RCVBUF the receiver set (the kernel doubles it).
	RcvBuf int `json:"rcvbuf,omitempty"`
	// StoppedReading and ResumedReading are when the receiver stopped and
	// started calling read again (lab clock); a zero ResumedReading means
	// never.
	StoppedReading time.Time `json:"stopped_reading,omitzero"`
	ResumedReading time.Time `json:"resumed_reading,omitzero"`
	// MaxReadPause bounds any pause of a slow but reading consumer, in
	// seconds: no zero window it causes can last longer.
	MaxReadPause float64 `json:"max_read_pause_s,omitempty"`
}

// Incident is a fault the lab planted: the rule that must fire, and on
// which conversations.
type Incident struct {
	Rule  string `json:"rule"`
	Flows []Flow `json:"flows"`
	// Conversations are the Conversation.IDs behind Flows.
	Conversations []string `json:"conversations"`
	// What the lab did, in one sentence.
	What string `json:"what"`
	// Params are the numbers of the fault (seconds, bytes, counts), by name.
	Params map[string]float64 `json:"params,omitempty"`
	// Optional marks a consequence of a planted fault rather than a fault
	// of its own (nginx closing its upstream connection with unread data,
	// hence a RST): an analyzer may report it and need not. Count it
	// neither as a miss nor as a false alarm.
	Optional bool `json:"optional,omitempty"`
}

// Flow is a conversation's endpoints as incidents list them.
type Flow struct {
	Client string `json:"client"`
	Server string `json:"server"`
}

// Joins are the links between log records and conversations the lab knows
// for certain.
type Joins struct {
	Strace []StraceJoin `json:"strace,omitempty"`
	Nginx  []NginxJoin  `json:"nginx,omitempty"`
}

// StraceJoin ties a file descriptor of a traced process to a conversation.
type StraceJoin struct {
	File string `json:"file"`
	PID  int    `json:"pid"` // Process.PID (thread ids in Process.TIDs)
	FD   int    `json:"fd"`
	// Local and Peer are the socket's addresses as the traced process saw
	// them (getsockname/getpeername on the fd).
	Local        string `json:"local"`
	Peer         string `json:"peer"`
	Conversation string `json:"conversation"`
}

// NginxJoin ties nginx's connection serial number ($connection, the *N of
// the error log) to the client conversation and the upstream one.
type NginxJoin struct {
	Connection   int64  `json:"connection"`
	Client       string `json:"client"` // client ip:port
	Server       string `json:"server"` // nginx's listening ip:port
	Request      string `json:"request"`
	Conversation string `json:"conversation"`
	// Upstream is nginx's connection to the upstream for this request,
	// when there was one; its Client port is 0 when nginx's connect was
	// refused and nobody saw the port.
	Upstream             *Flow  `json:"upstream,omitempty"`
	UpstreamConversation string `json:"upstream_conversation,omitempty"`
}

// Counter is a kernel counter (/proc/net/netstat, /proc/net/snmp) read by
// the lab before and after the traffic. Counters are host-wide: other
// traffic on the host can add to them.
type Counter struct {
	Name   string `json:"name"` // nstat name, e.g. "TcpExtListenOverflows"
	Before int64  `json:"before"`
	After  int64  `json:"after"`
}

// Load reads a facts.json file.
func Load(path string) (Facts, error) {
	var f Facts
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	if f.Schema != SchemaVersion {
		return f, fmt.Errorf("%s: facts schema %d, want %d", path, f.Schema, SchemaVersion)
	}
	return f, nil
}

// Conversation returns the conversation with the given id.
func (f *Facts) Conversation(id string) (Conversation, bool) {
	for _, c := range f.Conversations {
		if c.ID == id {
			return c, true
		}
	}
	return Conversation{}, false
}
