package nginx

import (
	"net/netip"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones these tests name, whatever the machine has

	"wiremortem/decoders/logline"
)

func TestParseErrorLine(t *testing.T) {
	at := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	addr := netip.MustParseAddr
	tests := []struct {
		name string
		line string
		want ErrorRecord
	}{
		{
			// Seed 001: the reset nginx logged when a slow WebSocket agent
			// stopped reading.
			name: "send failed while proxying upgraded connection",
			line: `2020/04/15 18:02:51 [error] 374#0: *1917238 send() failed (104: Connection reset by peer) while proxying upgraded connection, client: 172.28.25.222, server: localhost, request: "GET /ws/358/5c5d8dafac7f4586a751ff4c68fb2999/websocket HTTP/1.1", upstream: "http://172.28.72.77:8899/ws/358/5c5d8dafac7f4586a751ff4c68fb2999/websocket", host: "172.28.72.114:8443"`,
			want: ErrorRecord{
				Lines: 1, Time: at(2020, 4, 15, 18, 2, 51), Level: LevelError, PID: 374, TID: 0, Connection: 1917238,
				Message: "send() failed", Call: "send", Errno: 104, ErrnoText: "Connection reset by peer",
				Context: "proxying upgraded connection",
				Client:  "172.28.25.222", ClientAddr: addr("172.28.25.222"), Server: "localhost",
				Request:      "GET /ws/358/5c5d8dafac7f4586a751ff4c68fb2999/websocket HTTP/1.1",
				Upstream:     "http://172.28.72.77:8899/ws/358/5c5d8dafac7f4586a751ff4c68fb2999/websocket",
				UpstreamAddr: netip.MustParseAddrPort("172.28.72.77:8899"), Host: "172.28.72.114:8443",
			},
		},
		{
			// Seed 001, second line.
			name: "send failed, second seed line",
			line: `2020/04/15 18:03:03 [error] 374#0: *1913375 send() failed (104: Connection reset by peer) while proxying upgraded connection, client: 172.28.25.214, server: localhost, request: "GET /ws/453/60c9a5af41374f9dbaad4d5444d25c96/websocket HTTP/1.1", upstream: "http://172.28.72.77:8888/ws/453/60c9a5af41374f9dbaad4d5444d25c96/websocket", host: "172.28.72.114:8443"`,
			want: ErrorRecord{
				Lines: 1, Time: at(2020, 4, 15, 18, 3, 3), Level: LevelError, PID: 374, Connection: 1913375,
				Message: "send() failed", Call: "send", Errno: 104, ErrnoText: "Connection reset by peer",
				Context: "proxying upgraded connection",
				Client:  "172.28.25.214", ClientAddr: addr("172.28.25.214"), Server: "localhost",
				Request:      "GET /ws/453/60c9a5af41374f9dbaad4d5444d25c96/websocket HTTP/1.1",
				Upstream:     "http://172.28.72.77:8888/ws/453/60c9a5af41374f9dbaad4d5444d25c96/websocket",
				UpstreamAddr: netip.MustParseAddrPort("172.28.72.77:8888"), Host: "172.28.72.114:8443",
			},
		},
		{
			// elastic/beats filebeat nginx error test log (0073692d), line 1.
			name: "open failed with a referrer",
			line: `2016/10/25 14:49:34 [error] 54053#0: *1 open() "/usr/local/Cellar/nginx/1.10.2_1/html/favicon.ico" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "GET /favicon.ico HTTP/1.1", host: "localhost:8080", referrer: "http://localhost:8080/"`,
			want: ErrorRecord{
				Lines: 1, Time: at(2016, 10, 25, 14, 49, 34), Level: LevelError, PID: 54053, Connection: 1,
				Message: `open() "/usr/local/Cellar/nginx/1.10.2_1/html/favicon.ico" failed`, Call: "open", Errno: 2, ErrnoText: "No such file or directory",
				Client: "127.0.0.1", ClientAddr: addr("127.0.0.1"), Server: "localhost", Request: "GET /favicon.ico HTTP/1.1",
				Host: "localhost:8080", Referrer: "http://localhost:8080/",
			},
		},
		{
			name: "no connection, no fields",
			line: `2026/11/22 10:00:00 [notice] 1234#1234: signal process started`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelNotice, PID: 1234, TID: 1234, Message: "signal process started"},
		},
		{
			name: "errno without context",
			line: `2026/11/22 10:00:00 [emerg] 1#1: bind() to 0.0.0.0:80 failed (98: Address already in use)`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelEmerg, PID: 1, TID: 1,
				Message: "bind() to 0.0.0.0:80 failed", Call: "bind", Errno: 98, ErrnoText: "Address already in use"},
		},
		{
			// nginx-issue-excerpts: chobits/ngx_http_proxy_connect_module#122.
			name: "a third-party action and no upstream field",
			line: `2019/08/07 11:17:59 [error] 6#0: *6 upstream timed out (110: Connection timed out) while connecting to upstream(proxy_connect), client: 10.0.0.1, server: websocket.my.com, request: "CONNECT websocket.my.com:443 HTTP/1.0"`,
			want: ErrorRecord{Lines: 1, Time: at(2019, 8, 7, 11, 17, 59), Level: LevelError, PID: 6, Connection: 6,
				Message: "upstream timed out", Errno: 110, ErrnoText: "Connection timed out", Context: "connecting to upstream(proxy_connect)",
				Client: "10.0.0.1", ClientAddr: addr("10.0.0.1"), Server: "websocket.my.com", Request: "CONNECT websocket.my.com:443 HTTP/1.0"},
		},
		{
			// nginx-issue-excerpts: getsentry/self-hosted#477, an empty server name.
			name: "empty server name",
			line: `2020/05/07 03:15:12 [error] 6#6: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 172.21.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://172.21.0.19:9000/", host: "0.0.0.0:9000"`,
			want: ErrorRecord{Lines: 1, Time: at(2020, 5, 7, 3, 15, 12), Level: LevelError, PID: 6, TID: 6, Connection: 1,
				Message: "connect() failed", Call: "connect", Errno: 111, ErrnoText: "Connection refused", Context: "connecting to upstream",
				Client: "172.21.0.1", ClientAddr: addr("172.21.0.1"), Request: "GET / HTTP/1.1",
				Upstream: "http://172.21.0.19:9000/", UpstreamAddr: netip.MustParseAddrPort("172.21.0.19:9000"), Host: "0.0.0.0:9000"},
		},
		{
			name: "client text that imitates fields is read from the right",
			line: `2026/11/22 10:00:00 [error] 9#9: *5 open() "/x" failed (2: No such file or directory), client: 1.2.3.4, server: s, request: "GET /a", host: "evil HTTP/1.1", host: "real", referrer: "http://r/, client: 9.9.9.9"`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelError, PID: 9, TID: 9, Connection: 5,
				Message: `open() "/x" failed`, Call: "open", Errno: 2, ErrnoText: "No such file or directory",
				Client: "1.2.3.4", ClientAddr: addr("1.2.3.4"), Server: "s", Request: `GET /a", host: "evil HTTP/1.1`,
				Host: "real", Referrer: "http://r/, client: 9.9.9.9"},
		},
		{
			name: "a host header holding its own marker",
			line: `2026/11/22 10:00:00 [error] 9#9: *6 x, client: 1.2.3.4, server: s, request: "GET / HTTP/1.1", host: "h", host: x"`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelError, PID: 9, TID: 9, Connection: 6,
				Message: "x", Client: "1.2.3.4", ClientAddr: addr("1.2.3.4"), Server: "s", Request: "GET / HTTP/1.1", Host: `h", host: x`},
		},
		{
			// nginx-issue-excerpts: engintron/engintron#1333.
			name: "IPv4-mapped client, SSL handshake to upstream",
			line: `2021/06/18 14:49:16 [error] 1379645#1379645: *73 peer closed connection in SSL handshake (104: Connection reset by peer) while SSL handshaking to upstream, client: ::ffff:62.210.78.76, server: localhost, request: "GET /x/ HTTP/1.1", upstream: "https://85.10.200.69:8443/x/", host: "agsksa.com"`,
			want: ErrorRecord{Lines: 1, Time: at(2021, 6, 18, 14, 49, 16), Level: LevelError, PID: 1379645, TID: 1379645, Connection: 73,
				Message: "peer closed connection in SSL handshake", Errno: 104, ErrnoText: "Connection reset by peer", Context: "SSL handshaking to upstream",
				Client: "::ffff:62.210.78.76", ClientAddr: addr("::ffff:62.210.78.76"), Server: "localhost", Request: "GET /x/ HTTP/1.1",
				Upstream: "https://85.10.200.69:8443/x/", UpstreamAddr: netip.MustParseAddrPort("85.10.200.69:8443"), Host: "agsksa.com"},
		},
		{
			name: "stream module fields",
			line: `2026/11/22 10:00:00 [error] 7#7: *3 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: 0.0.0.0:9000, upstream: "127.0.0.1:9001", bytes from/to client:0/0, bytes from/to upstream:0/0`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelError, PID: 7, TID: 7, Connection: 3,
				Message: "connect() failed", Call: "connect", Errno: 111, ErrnoText: "Connection refused", Context: "connecting to upstream",
				Client: "127.0.0.1", ClientAddr: addr("127.0.0.1"), Server: "0.0.0.0:9000",
				Upstream: "127.0.0.1:9001", UpstreamAddr: netip.MustParseAddrPort("127.0.0.1:9001"),
				OtherFields: []Variable{{"bytes from/to client", "0/0"}, {"bytes from/to upstream", "0/0"}}},
		},
		{
			name: "a quoted while is not the context",
			line: `2026/11/22 10:00:00 [info] 1#1: *9 client sent invalid header line: "X: a while b" while reading client request headers, client: 1.2.3.4, server: s, request: "GET / HTTP/1.1"`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelInfo, PID: 1, TID: 1, Connection: 9,
				Message: `client sent invalid header line: "X: a while b"`, Context: "reading client request headers",
				Client: "1.2.3.4", ClientAddr: addr("1.2.3.4"), Server: "s", Request: "GET / HTTP/1.1"},
		},
		{
			name: "a while inside quotes and no context",
			line: `2026/11/22 10:00:00 [info] 1#1: *9 upstream sent "a while b"`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelInfo, PID: 1, TID: 1, Connection: 9,
				Message: `upstream sent "a while b"`},
		},
		{
			name: "an SSL error in parentheses is not an errno",
			line: `2026/11/22 10:00:00 [crit] 1#1: *2 SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking, client: 10.0.0.1, server: 0.0.0.0:443`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelCrit, PID: 1, TID: 1, Connection: 2,
				Message: "SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share)", Call: "SSL_do_handshake",
				Context: "SSL handshaking", Client: "10.0.0.1", ClientAddr: addr("10.0.0.1"), Server: "0.0.0.0:443"},
		},
		{
			name: "client timed out on an upgraded connection",
			line: `2026/11/22 10:00:00 [info] 1#1: *12 client timed out (110: Connection timed out) while proxying upgraded connection, client: 127.0.0.1, server: lab, request: "GET /ws HTTP/1.1", upstream: "http://[::1]:9001/ws", host: "lab"`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelInfo, PID: 1, TID: 1, Connection: 12,
				Message: "client timed out", Errno: 110, ErrnoText: "Connection timed out", Context: "proxying upgraded connection",
				Client: "127.0.0.1", ClientAddr: addr("127.0.0.1"), Server: "lab", Request: "GET /ws HTTP/1.1",
				Upstream: "http://[::1]:9001/ws", UpstreamAddr: netip.MustParseAddrPort("[::1]:9001"), Host: "lab"},
		},
		{
			// nginx-issue-excerpts: XTLS/Xray-core#1207, cut off by its poster:
			// the last field is unterminated, so none is taken.
			name: "truncated last field",
			line: `2026/11/22 10:00:00 [error] 4112#4112: *345 recv() failed (104: Connection reset by peer) while proxying upgraded connection, client: 3.3.3.3, host: "domain.com`,
			want: ErrorRecord{Lines: 1, Time: at(2026, 11, 22, 10, 0, 0), Level: LevelError, PID: 4112, TID: 4112, Connection: 345,
				Message: `recv() failed (104: Connection reset by peer) while proxying upgraded connection, client: 3.3.3.3, host: "domain.com`, Call: "recv"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseErrorLine(tt.line, nil)
			if err != nil {
				t.Fatalf("ParseErrorLine: %v", err)
			}
			if g, w := jsonOf(t, got), jsonOf(t, tt.want); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestParseErrorLineClock(t *testing.T) {
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatalf("no zone database: %v", err)
	}
	rec, err := ParseErrorLine(`2020/04/15 18:02:51 [error] 374#0: *1 x`, shanghai)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2020, 4, 15, 10, 2, 51, 0, time.UTC); !rec.Time.Equal(want) || rec.TimeHasZone {
		t.Errorf("time %v (has zone %v), want %v read in Asia/Shanghai", rec.Time, rec.TimeHasZone, want)
	}
}

func TestParseErrorLineErrors(t *testing.T) {
	tests := []struct{ line, want string }{
		{`*10088819 recv() failed (104: Connection reset by peer)`, `nginx error log: no timestamp: starts with "*10088819 recv() failed "`},
		{`2026/11/22 10:00:00 [oops] 1#1: x`, `nginx error log: byte 21: unknown level in " [oops] 1#1: x"`},
		{`2026/11/22 10:00:00 [error] x: y`, `nginx error log: expected "pid#tid: " after the level, found "x: y"`},
		{`2026/11/22 10:00:00 error`, `nginx error log: byte 19: expected " [level]", found " error"`},
		{`2026/13/22 10:00:00 [error] 1#1: x`, `nginx error log: no timestamp: starts with "2026/13/22 10:00:00 [err"`},
	}
	for _, tt := range tests {
		_, err := ParseErrorLine(tt.line, nil)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseErrorLine(%q) error = %v\nwant %s", tt.line, err, tt.want)
		}
	}
}

type errorSeen struct {
	Line    int64
	Lines   int
	Message string
	Reason  string
}

func scanErrors(t *testing.T, input string, opts logline.Options) ([]errorSeen, logline.Tally) {
	t.Helper()
	s := NewErrorScanner(strings.NewReader(input), opts)
	var got []errorSeen
	for s.Scan() {
		if r := s.Record(); r != nil {
			got = append(got, errorSeen{Line: r.Ref.Line, Lines: r.Lines, Message: r.Message})
		} else {
			u := s.Unparsed()
			got = append(got, errorSeen{Line: u.Ref.Line, Reason: u.Reason})
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	tally := s.Tally()
	if !tally.Balanced() {
		t.Errorf("tally does not add up: %+v", tally)
	}
	return got, tally
}

func TestErrorScannerMultiLine(t *testing.T) {
	input := strings.Join([]string{
		`stray line before any message`,
		`2019/10/30 23:26:34 [error] 205860#205860: *180289 FastCGI sent in stderr: "PHP message: one`,
		`PHP message: two`,
		``,
		`PHP message: three" while reading response header from upstream, client: 1.2.3.4, server: s, request: "GET / HTTP/1.1"`,
		`not a continuation: the message above ended with its fields`,
		`2026/11/22 10:00:00 [error] 1#1: *2 lua entry thread aborted: runtime error: boom`,
		`stack traceback:`,
		"\tcoroutine 0:",
		`2026/11/22 10:00:01 [notice] 1#1: exiting`,
	}, "\n")
	got, tally := scanErrors(t, input, logline.Options{Source: "error.log"})
	want := []errorSeen{
		{Line: 1, Reason: ReasonNoTimestamp},
		{Line: 2, Lines: 4, Message: "FastCGI sent in stderr: \"PHP message: one\nPHP message: two\n\nPHP message: three\""},
		{Line: 6, Reason: ReasonNoTimestamp},
		{Line: 7, Lines: 3, Message: "lua entry thread aborted: runtime error: boom\nstack traceback:\n\tcoroutine 0:"},
		{Line: 10, Lines: 1, Message: "exiting"},
	}
	if jsonOf(t, got) != jsonOf(t, want) {
		t.Errorf("got %s\nwant %s", jsonOf(t, got), jsonOf(t, want))
	}
	if tally.Lines != 10 || tally.Records != 3 || tally.ParsedLines != 8-1 || tally.BlankLines != 1 {
		t.Errorf("tally %+v", tally)
	}
}

func TestErrorScannerCaps(t *testing.T) {
	input := strings.Join([]string{
		`2026/11/22 10:00:00 [error] 1#1: *2 start of a long message`,
		strings.Repeat("x", 40),
		strings.Repeat("y", 40),
		strings.Repeat("z", 40),
		`2026/11/22 10:00:01 [error] 1#1: *3 ` + strings.Repeat("w", 100),
		`2026/11/22 10:00:02 [error] 1#1: *4 ok`,
	}, "\n")
	got, tally := scanErrors(t, input, logline.Options{MaxLineBytes: 100})
	want := []errorSeen{
		{Line: 1, Lines: 2, Message: "start of a long message\n" + strings.Repeat("x", 40)},
		{Line: 3, Reason: ReasonMessageOverCap},
		{Line: 4, Reason: ReasonMessageOverCap},
		{Line: 5, Reason: logline.ReasonTooLong},
		{Line: 6, Lines: 1, Message: "ok"},
	}
	if jsonOf(t, got) != jsonOf(t, want) {
		t.Errorf("got %s\nwant %s", jsonOf(t, got), jsonOf(t, want))
	}
	if tally.Unparsed() != 3 || tally.Records != 2 {
		t.Errorf("tally %+v", tally)
	}
}
