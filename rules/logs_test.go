package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/logline"
	"wiremortem/decoders/nginx"
	"wiremortem/decoders/sockstat"
	"wiremortem/decoders/strace"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// labAccessFormat is the lab's nginx log_format: $remote_port and
// $connection make the joins, the $upstream_* variables say what nginx
// tried.
const labAccessFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rport=$remote_port conn=$connection reqs=$connection_requests upstream=$upstream_addr ustatus=$upstream_status rt=$request_time uct=$upstream_connect_time urt=$upstream_response_time`

// logText is one log file for withLogs: its kind ("nginx-error",
// "nginx-access", "strace", "ss"), its name and its lines.
type logText struct{ kind, name, text string }

// withLogs reads log text with wiremortem's own decoders and joins it to
// the input's conversations with correlate, as analysis does, on t0's
// clock: times without a zone are UTC, strace's times of day fall on t0's
// date, and every offset is given as 0 (the clocks agree). A line a
// decoder cannot read fails the test.
func withLogs(t *testing.T, in *Input, logs ...logText) *Input {
	t.Helper()
	src := correlate.Sources{Conversations: in.Conversations, HTTP: in.HTTP}
	for _, l := range logs {
		opts := logline.Options{Source: l.name}
		r := strings.NewReader(l.text)
		switch l.kind {
		case "nginx-error":
			f := correlate.ErrorFile{Path: l.name, OffsetGiven: true}
			s := nginx.NewErrorScanner(r, opts)
			for s.Scan() {
				if rec := s.Record(); rec != nil {
					f.Records = append(f.Records, *rec)
				} else {
					t.Fatalf("%s: %+v", l.name, s.Unparsed())
				}
			}
			src.Errors = append(src.Errors, f)
		case "nginx-access":
			format, err := nginx.ParseFormat(labAccessFormat)
			if err != nil {
				t.Fatal(err)
			}
			f := correlate.AccessFile{Path: l.name, OffsetGiven: true}
			s := nginx.NewAccessScanner(r, format, opts)
			for s.Scan() {
				if rec := s.Record(); rec != nil {
					f.Records = append(f.Records, *rec)
				} else {
					t.Fatalf("%s: %+v", l.name, s.Unparsed())
				}
			}
			src.Access = append(src.Access, f)
		case "strace":
			res, err := strace.NewScanner(r, strace.Options{Options: opts, Date: t0}).Run()
			if err != nil {
				t.Fatal(err)
			}
			src.Straces = append(src.Straces, correlate.StraceFile{Path: l.name, Result: res, OffsetGiven: true})
		case "ss":
			f := correlate.SnapshotFile{Path: l.name, OffsetGiven: true}
			s := sockstat.NewScanner(r, opts)
			for s.Scan() {
				if snap := s.Snapshot(); snap != nil {
					f.Snapshots = append(f.Snapshots, *snap)
				} else {
					t.Fatalf("%s: %+v", l.name, s.Unparsed())
				}
			}
			src.Snapshots = append(src.Snapshots, f)
		default:
			t.Fatalf("unknown log kind %q", l.kind)
		}
	}
	in.Logs = correlate.Join(src)
	return in
}

func TestNginxTimer(t *testing.T) {
	const tail = `, client: 10.0.0.5, server: lab, request: "GET /x HTTP/1.1", upstream: "%s", host: "lab"`
	tests := []struct {
		message, upstream string
		writeBlocked      bool
		want              string
	}{
		{"upstream timed out (110: Connection timed out) while connecting to upstream", "http://10.0.0.9:80/x", false, "proxy_connect_timeout"},
		{"upstream timed out (110: Connection timed out) while SSL handshaking to upstream", "https://10.0.0.9:443/x", false, "proxy_connect_timeout"},
		{"upstream timed out (110: Connection timed out) while sending request to upstream", "http://10.0.0.9:80/x", false, "proxy_send_timeout"},
		{"upstream timed out (110: Connection timed out) while reading response header from upstream", "fastcgi://unix:/run/php.sock:", false, "fastcgi_read_timeout"},
		{"upstream timed out (110: Connection timed out) while reading upstream", "uwsgi://10.0.0.9:3031", false, "uwsgi_read_timeout"},
		{"upstream timed out (110: Connection timed out) while reading response header from upstream", "grpc://10.0.0.9:50051", false, "grpc_read_timeout"},
		{"upstream timed out (110: Connection timed out) while proxying upgraded connection", "http://10.0.0.9:80/ws", false, "proxy_read_timeout"},
		{"upstream timed out (110: Connection timed out) while proxying upgraded connection", "http://10.0.0.9:80/ws", true, "proxy_send_timeout"},
		{"client timed out (110: Connection timed out) while proxying upgraded connection", "http://10.0.0.9:80/ws", false, "send_timeout"},
		{"client timed out (110: Connection timed out) while sending to client", "http://10.0.0.9:80/x", false, "send_timeout"},
		// Not timers the rules name.
		{"connect() failed (111: Connection refused) while connecting to upstream", "http://10.0.0.9:80/x", false, ""},
		{"recv() failed (104: Connection reset by peer) while proxying upgraded connection", "http://10.0.0.9:80/ws", false, ""},
		{"client timed out (110: Connection timed out) while reading client request headers", "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.message+" "+tt.upstream, func(t *testing.T) {
			line := "2024/05/01 12:00:00 [error] 10#10: *1 " + tt.message + strings.Replace(tail, "%s", tt.upstream, 1)
			r, err := nginx.ParseErrorLine(line, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := nginxTimer(&r, tt.writeBlocked); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCounterDelta(t *testing.T) {
	const before, after = "TcpExtListenOverflows           173                0.0\n", "TcpExtListenOverflows           211                0.0\n"
	tests := []struct {
		name string
		logs []logText
		// want is "before -> after, ordered", "" when no rise is known.
		want string
	}{
		{
			// nstat files without timestamps, given after before (as a
			// shell glob orders them): the counter only grows, so the
			// smaller value came first.
			name: "untimed snapshots in the wrong order",
			logs: []logText{{"ss", "nstat-after.txt", "#kernel\n" + after}, {"ss", "nstat-before.txt", "#kernel\n" + before}},
			want: "nstat-before.txt 173 -> nstat-after.txt 211, by value",
		},
		{
			name: "timed snapshots",
			logs: []logText{{"ss", "nstat.txt", "2024-05-01 12:00:05+00:00\n#kernel\n" + before + "2024-05-01 12:00:10+00:00\n#kernel\n" + "TcpExtListenOverflows           170                0.0\n"}},
			want: "nstat.txt 173 -> nstat.txt 170, by time",
		},
		{
			// netstat -s and nstat read the same counter: one pair from
			// one tool is cited.
			name: "two tools",
			logs: []logText{{"ss", "nstat-before.txt", "#kernel\n" + before}, {"ss", "netstat-s-after.txt", "TcpExt:\n    240 times the listen queue of a socket overflowed\n"}, {"ss", "nstat-after.txt", "#kernel\n" + after}},
			want: "nstat-before.txt 173 -> nstat-after.txt 211, by value",
		},
		{
			name: "one snapshot",
			logs: []logText{{"ss", "nstat-before.txt", "#kernel\n" + before}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := withLogs(t, input(time.Second), tt.logs...)
			rise, ok := counterDelta(in, sockstat.CounterListenOverflows)
			got := ""
			if ok {
				got = fmtRise(rise)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func fmtRise(r counterRise) string {
	return strings.Join([]string{r.before.Ref.Source, " ", Thousands(r.before.Value), " -> ", r.after.Ref.Source, " ", Thousands(r.after.Value), ", ", r.ordered}, "")
}

// TestLogStamp: a log's time is cited only when its clock is known to
// match the capture's.
func TestLogStamp(t *testing.T) {
	at := t0.Add(8 * time.Hour)
	in := input(time.Second)
	in.Logs = &correlate.Joined{Clocks: map[string]correlate.ClockResult{
		"paired.strace":   {Estimate: &correlate.SkewEstimate{Matches: 3}},
		"given.strace":    {Given: true},
		"unpaired.strace": {NotEnough: "no record could be paired with a packet"},
	}}
	tests := []struct {
		source  string
		hasZone bool
		kept    bool
	}{
		{"paired.strace", false, true},
		{"given.strace", false, true},
		{"unpaired.strace", false, false},
		{"unpaired.strace", true, true},
		{"built-by-hand.log", false, true},
	}
	for _, tt := range tests {
		s := in.logStamp(refAt(tt.source, 7), at, tt.hasZone)
		if kept := !s.Time.IsZero(); kept != tt.kept || s.Line != 7 {
			t.Errorf("%s (zone %v): time kept %v, line %d; want %v, 7", tt.source, tt.hasZone, kept, s.Line, tt.kept)
		}
	}
}

func refAt(source string, line int64) evidence.Ref { return evidence.Ref{Source: source, Line: line} }

// TestTracedSockets: the traced socket on each side of a conversation,
// and what citeStraceLife cites of it, with times kept only when the
// trace's clock is known.
func TestTracedSockets(t *testing.T) {
	const trace = `500  11:59:59.000000 bind(3, {sa_family=AF_INET, sin_port=htons(9501), sin_addr=inet_addr("0.0.0.0")}, 16) = 0 <0.000010>
500  11:59:59.000100 listen(3, 128) = 0 <0.000010>
500  12:00:00.000200 accept4(3, {sa_family=AF_INET, sin_port=htons(50000), sin_addr=inet_addr("10.0.2.1")}, [16], SOCK_CLOEXEC) = 5 <0.000010>
500  12:00:00.010100 read(5, "PING\r\n", 4096) = 6 <0.000010>
500  12:00:00.010200 write(5, "+PONG\r\n", 7) = 7 <0.000010>
500  12:00:01.000100 read(5, "", 4096) = 0 <0.000010>
500  12:00:01.000200 close(5) = 0 <0.000010>
`
	c := conv(1, "10.0.2.1:50000", "10.0.0.9:9501").handshake(0).data(flows.Client, 10*ms, 6).data(flows.Server, 10*ms, 7).
		fin(flows.Client, 1*s, ms).fin(flows.Server, 1*s+ms, -1).done()
	for _, known := range []bool{true, false} {
		in := withLogs(t, input(2*s, c), logText{"strace", "server.strace", trace})
		if !known {
			in.Logs.Clocks["server.strace"] = correlate.ClockResult{NotEnough: "no record could be paired with a packet"}
		}
		if s := sideSocket(in, c, flows.Client); s != nil {
			t.Errorf("a client socket: fd %d", s.Life.FD)
		}
		s := serverSocket(in, c)
		if s == nil || s.Life.FD != 5 {
			t.Fatalf("server socket %+v, want fd 5", s)
		}
		if l := listenerOf(in, c.Server); l == nil || l.Life.Backlog != 128 {
			t.Errorf("listener %+v, want backlog 128", l)
		}
		d := newDraft(Low, "low")
		d.citeStraceLife(in, s)
		inc := d.done()
		finish(&inc, DefaultLimits) // writes the evidence's descriptions
		var got []string
		for _, e := range inc.Evidence {
			got = append(got, fmt.Sprintf("%s:%d %v %s", e.Source, e.Line, !e.Time.IsZero(), e.What))
		}
		want := []string{
			fmt.Sprintf("server.strace:3 %v strace: accept returned fd 5 for 10.0.2.1:50000 (pid 500)", known),
			fmt.Sprintf("server.strace:4 %v strace: first read on fd 5 (6 bytes in all): \"PING\\r\\n\"", known),
			fmt.Sprintf("server.strace:5 %v strace: first write on fd 5", known),
			fmt.Sprintf("server.strace:6 %v strace: read on fd 5 returned 0: the peer had closed", known),
			fmt.Sprintf("server.strace:7 %v strace: close(5)", known),
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("clock known %v: cited\n%s\nwant\n%s", known, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
