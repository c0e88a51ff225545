package sockstat

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func uid(n uint32) *uint32 { return &n }

func TestParseSSLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Socket
	}{
		{
			// From testdata/ss_tanoi_watch.txt: a backlog of 1 with 2 waiting.
			name: "full accept queue",
			line: "LISTEN     2      1                127.0.0.1:9003             0.0.0.0:*    ",
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateListen, RecvQ: 2, SendQ: 1, Local: ap("127.0.0.1:9003"), Peer: ap("0.0.0.0:0")},
		},
		{
			name: "zero window: persist timer of 1.392 s",
			line: "ESTAB      0      2803712          127.0.0.1:9002           127.0.0.1:39324 timer:(persist,1.392ms,0)",
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateEstablished, SendQ: 2803712, Local: ap("127.0.0.1:9002"), Peer: ap("127.0.0.1:39324"),
				Timer: &Timer{Kind: TimerZeroWindowProbe, Name: "persist", Expires: 1392 * time.Millisecond}},
		},
		{
			name: "SYN retransmit timer",
			line: "SYN-SENT   0      1                127.0.0.1:48952          127.0.0.1:9003  timer:(on,184ms,1)",
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateSynSent, SendQ: 1, Local: ap("127.0.0.1:48952"), Peer: ap("127.0.0.1:9003"),
				Timer: &Timer{Kind: TimerRetransmit, Name: "on", Expires: 184 * time.Millisecond, Retransmits: 1}},
		},
		{
			name: "keepalive in minutes, CLOSE-WAIT spelled by ss",
			line: "CLOSE-WAIT 1      0                127.0.0.1:9001           127.0.0.1:40774 timer:(keepalive,1min30sec,2)",
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateCloseWait, RecvQ: 1, Local: ap("127.0.0.1:9001"), Peer: ap("127.0.0.1:40774"),
				Timer: &Timer{Kind: TimerKeepalive, Name: "keepalive", Expires: 90 * time.Second, Retransmits: 2}},
		},
		{
			name: "process, inode and the rest of -e",
			line: `LISTEN     0      16               127.0.0.1:9001             0.0.0.0:*     users:(("python3",pid=18835,fd=3)) ino:390517 sk:1001 cgroup:unreachable:1 <->`,
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateListen, SendQ: 16, Local: ap("127.0.0.1:9001"), Peer: ap("0.0.0.0:0"),
				Processes: []Process{{Name: "python3", PID: 18835, FD: 3}}, Inode: 390517, Extra: "sk:1001 cgroup:unreachable:1 <->"},
		},
		{
			name: "two processes, a blank in a name, uid",
			line: `ESTAB 0 0 10.0.0.1:443 10.0.0.2:5555 users:(("Web Content",pid=1,fd=3),("nginx",pid=13307,fd=7)) uid:33 timer:(timewait,58sec,0)`,
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateEstablished, Local: ap("10.0.0.1:443"), Peer: ap("10.0.0.2:5555"),
				Processes: []Process{{Name: "Web Content", PID: 1, FD: 3}, {Name: "nginx", PID: 13307, FD: 7}}, UID: uid(33),
				Timer: &Timer{Kind: TimerTimeWait, Name: "timewait", Expires: 58 * time.Second}},
		},
		{
			name: "old iproute2: users without pid= and fd=",
			line: `ESTAB      0      0      10.0.0.1:443      10.0.0.2:5555      users:(("nginx",13308,7))`,
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateEstablished, Local: ap("10.0.0.1:443"), Peer: ap("10.0.0.2:5555"),
				Processes: []Process{{Name: "nginx", PID: 13308, FD: 7}}},
		},
		{
			name: "IPv6 listener, any peer",
			line: "LISTEN     0      16                   [::1]:9005                [::]:*    ",
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateListen, SendQ: 16, Local: ap("[::1]:9005"), Peer: ap("[::]:0")},
		},
		{
			name: "dual-stack listener printed as *",
			line: "LISTEN     0      16                       *:9006                   *:*    ",
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateListen, SendQ: 16, Local: ap("[::]:9006"), Peer: ap("[::]:0")},
		},
		{
			name: "state filter: no State column, IPv4-mapped",
			line: "0      0       [::ffff:127.0.0.1]:9006  [::ffff:127.0.0.1]:38014       ",
			want: Socket{Tool: ToolSS, Proto: "tcp", Local: ap("[::ffff:127.0.0.1]:9006"), Peer: ap("[::ffff:127.0.0.1]:38014")},
		},
		{
			name: "Netid column, UDP bound to a device",
			line: "udp   UNCONN 0      0          127.0.0.53%lo:53        0.0.0.0:*",
			want: Socket{Tool: ToolSS, Proto: "udp", State: StateClose, Local: ap("127.0.0.53:53"), Peer: ap("0.0.0.0:0"), Interface: "lo"},
		},
		{
			name: "link-local with a scope",
			line: "tcp ESTAB 0 0 [fe80::1%eth0]:22 [fe80::2%eth0]:50000",
			want: Socket{Tool: ToolSS, Proto: "tcp", State: StateEstablished, Local: ap("[fe80::1]:22"), Peer: ap("[fe80::2]:50000"), Interface: "eth0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, problem := parseSSLine(tt.line)
			if !ok || problem != "" {
				t.Fatalf("ok %v, problem %q", ok, problem)
			}
			if g, w := jsonOf(t, got), jsonOf(t, tt.want); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestParseSSLineProblems(t *testing.T) {
	tests := []struct {
		line   string
		ok     bool
		wantIn string
	}{
		{"ESTAB 0 0 myhost:https peer.example:51234", true, "run ss with -n"},
		{"u_str ESTAB 0 0 * 1234 * 5678", true, `not an internet socket: Netid "u_str"`},
		{"ESTAB x 0 1.2.3.4:1 5.6.7.8:2", true, `queues "x" "0" are not numbers`},
		{`ESTAB 0 0 1.2.3.4:1 5.6.7.8:2 users:(("x",pid=z,fd=1))`, true, "bad process list"},
		{"ESTAB 0 0 1.2.3.4:1 5.6.7.8:2 timer:(on,5parsecs,0)", true, "bad timer"},
		{"ESTAB 0 0", true, "fewer than four columns"},
		{"    28 SYNs to LISTEN sockets dropped", false, ""},
		{"hello world this is text", false, ""},
	}
	for _, tt := range tests {
		_, ok, problem := parseSSLine(tt.line)
		if ok != tt.ok || !strings.Contains(problem, tt.wantIn) {
			t.Errorf("parseSSLine(%q) = ok %v, problem %q; want %v, %q", tt.line, ok, problem, tt.ok, tt.wantIn)
		}
	}
}

func TestParseTCPInfo(t *testing.T) {
	// From testdata/ss_tanoi_watch.txt: the side that cannot send.
	line := "\t ts sack bbr wscale:0,10 rto:208 backoff:3 rtt:5.258/10.5 mss:2048 pmtu:65535 rcvmss:536 advmss:65483 cwnd:12 bytes_sent:4096 bytes_acked:4096 segs_out:5 segs_in:6 data_segs_out:2 send 37392164bps lastsnd:1832 lastrcv:1832 lastack:272 notsent:2803712 minrtt:0.007 unacked:2 retrans:1/5 lost:1 snd_wnd:0   "
	got := parseTCPInfo(line)
	want := &TCPInfo{
		Raw: strings.TrimSpace(line), RTO: 208 * time.Millisecond, Backoff: 3, RTT: 5258 * time.Microsecond, RTTVar: 10500 * time.Microsecond,
		CWnd: 12, BytesSent: 4096, BytesAcked: 4096, LastSend: 1832 * time.Millisecond, LastRecv: 1832 * time.Millisecond, LastAck: 272 * time.Millisecond,
		NotSent: 2803712, Unacked: 2, Retrans: 1, RetransTotal: 5, Lost: 1,
	}
	if g, w := jsonOf(t, got), jsonOf(t, want); g != w {
		t.Errorf("got\n%s\nwant\n%s", g, w)
	}
}

func TestParseNetstatLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Socket
	}{
		{
			// Seed 001: nginx's listener, `netstat -anop|grep 443`.
			name: "listener with a process name holding a blank",
			line: "tcp        0      0 0.0.0.0:443             0.0.0.0:*               LISTEN      13307/nginx: worker  off (0.00/0/0)",
			want: Socket{Tool: ToolNetstat, Proto: "tcp", State: StateListen, Local: ap("0.0.0.0:443"), Peer: ap("0.0.0.0:0"),
				Processes: []Process{{Name: "nginx: worker", PID: 13307, FD: -1}}, Timer: &Timer{Kind: TimerOff, Name: "off"}},
		},
		{
			// Seed 001: nginx cannot send to the slow agent; the zero-window
			// probe timer runs.
			name: "Send-Q full, probing a zero window",
			line: "tcp        0 108528 172.28.72.117:443       172.28.72.119:63132     ESTABLISHED 13308/nginx: worker  probe (0.16/0/0)",
			want: Socket{Tool: ToolNetstat, Proto: "tcp", State: StateEstablished, SendQ: 108528, Local: ap("172.28.72.117:443"), Peer: ap("172.28.72.119:63132"),
				Processes: []Process{{Name: "nginx: worker", PID: 13308, FD: -1}}, Timer: &Timer{Kind: TimerZeroWindowProbe, Name: "probe", Expires: 160 * time.Millisecond}},
		},
		{
			// Seed 001: the agent that does not read (`netstat -tnulpao`).
			name: "Recv-Q full on the agent",
			line: "tcp6  362708      0 172.28.72.119:63132     172.28.72.117:443       ESTABLISHED 32278/java           off (0.00/0/0)",
			want: Socket{Tool: ToolNetstat, Proto: "tcp", State: StateEstablished, RecvQ: 362708, Local: ap("172.28.72.119:63132"), Peer: ap("172.28.72.117:443"),
				Processes: []Process{{Name: "java", PID: 32278, FD: -1}}, Timer: &Timer{Kind: TimerOff, Name: "off"}},
		},
		{
			name: "IPv6 any, keepalive with probes",
			line: "tcp6       0      0 :::9006                 :::*                    LISTEN      18835/python3        keepalive (7195.27/0/3)",
			want: Socket{Tool: ToolNetstat, Proto: "tcp", State: StateListen, Local: ap("[::]:9006"), Peer: ap("[::]:0"),
				Processes: []Process{{Name: "python3", PID: 18835, FD: -1}}, Timer: &Timer{Kind: TimerKeepalive, Name: "keepalive", Expires: 7195270 * time.Millisecond, Probes: 3}},
		},
		{
			name: "IPv4-mapped, no process, CLOSE_WAIT",
			line: "tcp6       1      0 ::ffff:10.0.0.1:80      ::ffff:10.0.0.2:51234   CLOSE_WAIT  -",
			want: Socket{Tool: ToolNetstat, Proto: "tcp", State: StateCloseWait, RecvQ: 1, Local: ap("[::ffff:10.0.0.1]:80"), Peer: ap("[::ffff:10.0.0.2]:51234")},
		},
		{
			name: "UDP has no state",
			line: "udp        0      0 0.0.0.0:68              0.0.0.0:*                           123/dhclient         off (0.00/0/0)",
			want: Socket{Tool: ToolNetstat, Proto: "udp", Local: ap("0.0.0.0:68"), Peer: ap("0.0.0.0:0"),
				Processes: []Process{{Name: "dhclient", PID: 123, FD: -1}}, Timer: &Timer{Kind: TimerOff, Name: "off"}},
		},
		{
			name: "retransmitting",
			line: "tcp        0      1 10.0.0.1:40000          10.0.0.2:80             SYN_SENT    on (0.20/3/0)",
			want: Socket{Tool: ToolNetstat, Proto: "tcp", State: StateSynSent, SendQ: 1, Local: ap("10.0.0.1:40000"), Peer: ap("10.0.0.2:80"),
				Timer: &Timer{Kind: TimerRetransmit, Name: "on", Expires: 200 * time.Millisecond, Retransmits: 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, problem := parseNetstatLine(tt.line)
			if !ok || problem != "" {
				t.Fatalf("ok %v, problem %q", ok, problem)
			}
			if g, w := jsonOf(t, got), jsonOf(t, tt.want); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestParseNetstatLineProblems(t *testing.T) {
	tests := []struct {
		line   string
		ok     bool
		wantIn string
	}{
		{"tcp 0 0 1.2.3.4:1 5.6.7.8:2 WEIRD", true, `unknown TCP state "WEIRD"`},
		{"tcp6 0 0 2001:db8:1234:5678:9abc:443 ::1:5 ESTABLISHED", true, "-W keeps IPv6 addresses whole"},
		{"tcp 0 0 1.2.3.4:1 5.6.7.8:2 ESTABLISHED 12/x on (a/0/0)", true, "bad timer"},
		{"tcp 0 0 1.2.3.4:1 5.6.7.8:2 ESTABLISHED x/y", true, `expected PID/Program name, found "x/y"`},
		{"tcp 0 x 1.2.3.4:1 5.6.7.8:2 ESTABLISHED", true, "are not numbers"},
		{"unix  2      [ ACC ]     STREAM     LISTENING     12345    /run/x.sock", false, ""},
		{"tcp x", false, ""},
	}
	for _, tt := range tests {
		_, ok, problem := parseNetstatLine(tt.line)
		if ok != tt.ok || !strings.Contains(problem, tt.wantIn) {
			t.Errorf("parseNetstatLine(%q) = ok %v, problem %q; want %v, %q", tt.line, ok, problem, tt.ok, tt.wantIn)
		}
	}
}

func TestTCPStateText(t *testing.T) {
	for spelling, want := range map[string]TCPState{"CLOSE-WAIT": StateCloseWait, "CLOSE_WAIT": StateCloseWait, "ESTAB": StateEstablished, "FIN-WAIT-1": StateFinWait1, "FIN_WAIT1": StateFinWait1} {
		var s TCPState
		if err := s.UnmarshalText([]byte(spelling)); err != nil || s != want {
			t.Errorf("UnmarshalText(%q) = %v, %v", spelling, s, err)
		}
	}
	if b, _ := StateCloseWait.MarshalText(); string(b) != "CLOSE_WAIT" {
		t.Errorf("CLOSE_WAIT marshals as %q", b)
	}
	var s TCPState
	if err := s.UnmarshalText([]byte("BOGUS")); err == nil {
		t.Error("BOGUS unmarshalled")
	}
	if TCPState(99).String() != "TCPState(99)" {
		t.Error(TCPState(99).String())
	}
}
