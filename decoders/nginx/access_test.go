package nginx

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/evidence"
)

// jsonOf renders a record as the JSON contract shows it; comparing these
// compares every field, times with their offsets.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustFormat(t testing.TB, directive string) *AccessFormat {
	t.Helper()
	f, err := ParseFormat(directive)
	if err != nil {
		t.Fatalf("ParseFormat(%q): %v", directive, err)
	}
	return f
}

func TestAccessParse(t *testing.T) {
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return tm
	}
	addr := netip.MustParseAddr
	tests := []struct {
		name   string
		format string
		line   string
		want   AccessRecord
	}{
		{
			// lnav test/logfile_access_log.0 line 1 (tstack/lnav bb0005f9).
			name:   "combined",
			format: "combined",
			line:   `192.168.202.254 - - [20/Jul/2009:22:59:26 +0000] "GET /vmw/cgi/tramp HTTP/1.0" 200 134 "-" "gPXE/0.9.7"`,
			want: AccessRecord{
				Time: utc("2009-07-20T22:59:26Z"), TimeHasZone: true,
				RemoteAddr: addr("192.168.202.254"),
				Request:    "GET /vmw/cgi/tramp HTTP/1.0", Method: "GET", URI: "/vmw/cgi/tramp", Protocol: "HTTP/1.0",
				Status: 200, BodyBytesSent: 134,
				Headers: []Variable{{"referer", ""}, {"user_agent", "gPXE/0.9.7"}},
			},
		},
		{
			// lnav test/logfile_access_log.1: nginx logs "-" for a request
			// that never sent a request line.
			name:   "no request line",
			format: "combined",
			line:   `10.112.81.15 - - [15/Feb/2013:06:00:31 +0000] "-" 400 0 "-" "-"`,
			want: AccessRecord{
				Time: utc("2013-02-15T06:00:31Z"), TimeHasZone: true,
				RemoteAddr: addr("10.112.81.15"), Status: 400,
				Headers: []Variable{{"referer", ""}, {"user_agent", ""}},
			},
		},
		{
			name:   "TLS hello to a plain port, escaped as \\xHH",
			format: "combined",
			line:   `203.0.113.9 - - [25/Oct/2016:14:49:33 +0200] "\x16\x03\x01\x00\xA5\x01" 400 157 "-" "-"`,
			want: AccessRecord{
				Time: time.Date(2016, 10, 25, 14, 49, 33, 0, time.FixedZone("", 7200)), TimeHasZone: true,
				RemoteAddr: addr("203.0.113.9"), Request: "\x16\x03\x01\x00\xa5\x01", Status: 400, BodyBytesSent: 157,
				Headers: []Variable{{"referer", ""}, {"user_agent", ""}},
			},
		},
		{
			name:   "user agent with escaped quotes, backslash and UTF-8",
			format: "main",
			line:   `::1 - bob [01/Jan/2024:00:00:00 -0530] "GET / HTTP/1.1" 200 5 "http://a/?q=\x22x\x22" "curl \x5C \xE4\xB8\xAD" "10.0.0.1, 10.0.0.2"`,
			want: AccessRecord{
				Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("", -19800)), TimeHasZone: true,
				RemoteAddr: addr("::1"), RemoteUser: "bob",
				Request: "GET / HTTP/1.1", Method: "GET", URI: "/", Protocol: "HTTP/1.1", Status: 200, BodyBytesSent: 5,
				Headers: []Variable{{"referer", `http://a/?q="x"`}, {"user_agent", `curl \ 中`}, {"x_forwarded_for", "10.0.0.1, 10.0.0.2"}},
			},
		},
		{
			name:   "ports, connection serial and upstream lists",
			format: `'$remote_addr:$remote_port $connection $connection_requests [$time_local] "$request" $status $request_time "$upstream_addr" "$upstream_status" $upstream_response_time $msec'`,
			line:   `127.0.0.1:51234 17 2 [22/Nov/2026:10:00:00 +0000] "GET /ws HTTP/1.1" 200 0.012 "127.0.0.1:9001, 127.0.0.1:9002 : unix:/run/app.sock" "502, 504 : 200" 0.001, 0.010 : 0.001 1795341600.123`,
			want: AccessRecord{
				Time: utc("2026-11-22T10:00:00.123Z"), TimeHasZone: true,
				RemoteAddr: addr("127.0.0.1"), RemotePort: 51234, Connection: 17, ConnectionRequests: 2,
				Request: "GET /ws HTTP/1.1", Method: "GET", URI: "/ws", Protocol: "HTTP/1.1", Status: 200,
				RequestTime: 12 * time.Millisecond,
				Upstreams: []UpstreamAttempt{
					{Group: 0, Addr: "127.0.0.1:9001", AddrPort: netip.MustParseAddrPort("127.0.0.1:9001"), Status: 502, ResponseTime: time.Millisecond},
					{Group: 0, Addr: "127.0.0.1:9002", AddrPort: netip.MustParseAddrPort("127.0.0.1:9002"), Status: 504, ResponseTime: 10 * time.Millisecond},
					{Group: 1, Addr: "unix:/run/app.sock", Status: 200, ResponseTime: time.Millisecond},
				},
			},
		},
		{
			name:   "upstream that was never connected",
			format: `'$status "$upstream_addr" $upstream_status $upstream_connect_time'`,
			line:   `502 "127.0.0.1:1" 502 -`,
			want: AccessRecord{
				Status:    502,
				Upstreams: []UpstreamAttempt{{Addr: "127.0.0.1:1", AddrPort: netip.MustParseAddrPort("127.0.0.1:1"), Status: 502}},
			},
		},
		{
			// Found by FuzzAccess: empty items and separators back to back.
			name:   "degenerate upstream lists",
			format: `'"$upstream_addr" "$upstream_status"'`,
			line:   `", " "- : 200"`,
			want: AccessRecord{
				Upstreams: []UpstreamAttempt{{Group: 0}, {Group: 1, Status: 200}},
			},
		},
		{
			name:   "escape=json",
			format: `log_format js escape=json '{"t":"$time_iso8601","addr":"$remote_addr","req":"$request","status":$status,"ua":"$http_user_agent","up":"$upstream_addr","x":"$ssl_protocol"}';`,
			line:   `{"t":"2026-11-22T10:00:00+01:00","addr":"::ffff:10.1.2.3","req":"GET /a\"b HTTP/1.1","status":101,"ua":"x\\y \u001B\/","up":"","x":""}`,
			want: AccessRecord{
				Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.FixedZone("", 3600)), TimeHasZone: true,
				RemoteAddr: addr("::ffff:10.1.2.3"),
				Request:    `GET /a"b HTTP/1.1`, Method: "GET", URI: `/a"b`, Protocol: "HTTP/1.1", Status: 101,
				Headers: []Variable{{"user_agent", "x\\y \x1b/"}},
				Other:   []Variable{{"ssl_protocol", ""}},
			},
		},
		{
			// elastic/integrations nginx access test-access.log (a185e7f4):
			// a vhost before the client address.
			name:   "virtual host first",
			format: `'$host $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"'`,
			line:   `lessons.example.com 192.168.0.1 - - [09/Jun/2020:12:10:39 -0700] "GET /A%20Beka HTTP/1.1" 206 7648063 "http://lessons.example.com/" "Mozilla/5.0"`,
			want: AccessRecord{
				Time: time.Date(2020, 6, 9, 12, 10, 39, 0, time.FixedZone("", -25200)), TimeHasZone: true,
				Host: "lessons.example.com", RemoteAddr: addr("192.168.0.1"),
				Request: "GET /A%20Beka HTTP/1.1", Method: "GET", URI: "/A%20Beka", Protocol: "HTTP/1.1", Status: 206, BodyBytesSent: 7648063,
				Headers: []Variable{{"referer", "http://lessons.example.com/"}, {"user_agent", "Mozilla/5.0"}},
			},
		},
		{
			name:   "host and request_uri with nothing between",
			format: `$host$request_uri $status $server_addr:$server_port $request_method $server_protocol $bytes_sent $request_length`,
			line:   `example.com/a?b=1 200 10.0.0.9:443 POST HTTP/2.0 1234 56`,
			want: AccessRecord{
				Host: "example.com", URI: "/a?b=1", Status: 200, ServerAddr: addr("10.0.0.9"), ServerPort: 443,
				Method: "POST", Protocol: "HTTP/2.0", BytesSent: 1234, RequestLength: 56,
			},
		},
		{
			name:   "HTTP/0.9 request line and a unix-socket client",
			format: `$remote_addr "$request" $status`,
			line:   `unix: "GET /" 200`,
			want:   AccessRecord{Request: "GET /", Method: "GET", URI: "/", Status: 200},
		},
		{
			name:   "escape=none keeps backslashes",
			format: `escape=none '"$request" $status'`,
			line:   `"GET /\x41 HTTP/1.1" 200`,
			want:   AccessRecord{Request: `GET /\x41 HTTP/1.1`, Method: "GET", URI: `/\x41`, Protocol: "HTTP/1.1", Status: 200},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustFormat(t, tt.format).Parse(tt.line)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if g, w := jsonOf(t, got), jsonOf(t, tt.want); g != w {
				t.Errorf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestAccessParseMismatch(t *testing.T) {
	tests := []struct {
		name, format, line string
		wantErr            string
	}{
		{
			// lnav test/logfile_bad_access_log.0 line 2: the "- -" is missing.
			name:    "missing ident and user",
			format:  "combined",
			line:    `192.168.202.254 [20/Jul/2009:22:59:29 +0000] "GET /vmw/vSphere/default/vmkboot.gz HTTP/1.0" 404 46210 "-" "gPXE/0.9.7"`,
			wantErr: `format mismatch: byte 0: no " - " after $remote_addr`,
		},
		{
			name:    "status not a number",
			format:  "combined",
			line:    `1.2.3.4 - - [20/Jul/2009:22:59:29 +0000] "GET / HTTP/1.0" abc 0 "-" "-"`,
			wantErr: `bad value: byte 58: $status: "abc" is not a status code`,
		},
		{
			name:    "impossible date",
			format:  "combined",
			line:    `1.2.3.4 - - [32/Jul/2009:22:59:29 +0000] "GET / HTTP/1.0" 200 0 "-" "-"`,
			wantErr: `bad value: byte 13: $time_local: "32/Jul/2009:22:59:29 +0000" is not a time`,
		},
		{
			name:    "main line read as combined",
			format:  "combined",
			line:    `1.2.3.4 - - [20/Jul/2009:22:59:29 +0000] "GET / HTTP/1.0" 200 0 "-" "ua" "10.0.0.1"`,
			wantErr: `format mismatch: byte 72: unexpected text after the format's end: " \"10.0.0.1\""`,
		},
		{
			name:    "remote address not an address",
			format:  "combined",
			line:    `<internal-ip> - - [20/Jul/2009:22:59:29 +0000] "GET / HTTP/1.0" 200 0 "-" "-"`,
			wantErr: `bad value: byte 0: $remote_addr: "<internal-ip>" is not an IP address`,
		},
		{
			name:    "no literal after a variable",
			format:  `'$status [$msec]'`,
			line:    `200 (1.5)`,
			wantErr: `format mismatch: byte 0: no " [" after $status`,
		},
		{
			name:    "literal text differs",
			format:  `'[$status] $host$request_uri'`,
			line:    `(200) h/`,
			wantErr: `format mismatch: byte 0: expected "[", found "(200) h/"`,
		},
		{
			name:    "literal after adjacent variables differs",
			format:  `'$status$request_time|'`,
			line:    `2001.5x`,
			wantErr: `format mismatch: byte 3: no "|" after $request_time`,
		},
		{
			name:    "bad JSON escape",
			format:  `escape=json '{"u":"$request_uri"}'`,
			line:    `{"u":"/a\qb"}`,
			wantErr: `bad value: byte 6: $request_uri: bad escape in "/a\\qb"`,
		},
		{
			name:    "upstream time not a number",
			format:  `'$status $upstream_response_time'`,
			line:    `200 0.001, 1e3 : -`,
			wantErr: `bad value: byte 4: $upstream_response_time: "1e3" is not a time in seconds`,
		},
		{
			name:    "upstream status not a number",
			format:  `'$upstream_status'`,
			line:    `502, x`,
			wantErr: `bad value: byte 0: $upstream_status: "x" is not a status code`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mustFormat(t, tt.format).Parse(tt.line)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("err = %v\nwant prefix %s", err, tt.wantErr)
			}
		})
	}
}

func TestAccessScannerAccountsForEveryLine(t *testing.T) {
	long := `1.2.3.4 - - [20/Jul/2009:22:59:29 +0000] "GET /` + strings.Repeat("a", 200) + ` HTTP/1.0" 200 0 "-" "-"`
	input := strings.Join([]string{
		`1.2.3.4 - - [20/Jul/2009:22:59:29 +0000] "GET / HTTP/1.0" 200 0 "-" "-"`,
		``,
		`garbage`,
		long,
		"1.2.3.5 - - [20/Jul/2009:22:59:30 +0000] \"GET /b HTTP/1.0\" 404 0 \"-\" \"-\"\r",
		`no newline at the end`,
	}, "\n")
	s := NewAccessScanner(strings.NewReader(input), mustFormat(t, "combined"), logline.Options{Source: "access.log", MaxLineBytes: 128})
	type seen struct {
		line   int64
		status int
		reason string
	}
	var got []seen
	for s.Scan() {
		if rec := s.Record(); rec != nil {
			got = append(got, seen{rec.Ref.Line, rec.Status, ""})
		} else {
			got = append(got, seen{s.Unparsed().Ref.Line, 0, s.Unparsed().Reason})
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	want := []seen{{1, 200, ""}, {3, 0, ReasonFormatMismatch}, {4, 0, logline.ReasonTooLong}, {5, 404, ""}, {6, 0, ReasonFormatMismatch}}
	if jsonOf(t, got) != jsonOf(t, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	tally := s.Tally()
	if !tally.Balanced() || tally.Lines != 6 || tally.Records != 2 || tally.BlankLines != 1 || tally.Unparsed() != 3 {
		t.Errorf("tally %+v", tally)
	}
}

func TestAccessScannerRef(t *testing.T) {
	input := "x\n" + `1.2.3.4 - - [20/Jul/2009:22:59:29 +0000] "GET / HTTP/1.0" 200 0 "-" "-"` + "\n"
	s := NewAccessScanner(strings.NewReader(input), mustFormat(t, "combined"), logline.Options{Source: "a.log"})
	var recs []AccessRecord
	var bad []logline.Unparsed
	for s.Scan() {
		if r := s.Record(); r != nil {
			recs = append(recs, *r)
		} else {
			bad = append(bad, *s.Unparsed())
		}
	}
	if len(recs) != 1 || recs[0].Ref != (evidence.Ref{Source: "a.log", Line: 2}) || recs[0].Offset != 2 {
		t.Errorf("records %+v", recs)
	}
	if len(bad) != 1 || bad[0].String() != `a.log:1 (byte 0): format mismatch: byte 0: no " - " after $remote_addr` || bad[0].Excerpt != "x" {
		t.Errorf("unparsed %+v", bad)
	}
}
