package nginx

import (
	"bytes"
	"strings"
	"testing"

	"wiremortem/decoders/logline"
)

// fuzzFormats are the formats FuzzAccess parses with: nginx's default, a
// text format with every typed variable and upstream lists, escape=json,
// and adjacent variables told apart by their shape.
var fuzzFormats = []string{
	"combined",
	labTextFormat,
	`escape=json '{"time":"$time_iso8601","remote_addr":"$remote_addr","request":"$request","status":$status,"up":"$upstream_addr","x":"$ssl_protocol"}'`,
	`'$host$request_uri $status$request_time $upstream_response_time $server_addr:$server_port $request_method $server_protocol'`,
	`escape=none '$remote_user|$http_x|$upstream_header_time'`,
}

// FuzzAccess feeds arbitrary input to the access scanner with each format:
// it must not panic, must account for every line, and a record's status
// must be a status code.
func FuzzAccess(f *testing.F) {
	f.Add(uint8(0), []byte(`192.168.202.254 - - [20/Jul/2009:22:59:26 +0000] "GET /vmw/cgi/tramp HTTP/1.0" 200 134 "-" "gPXE/0.9.7"`))
	f.Add(uint8(1), []byte(`127.0.0.1:48300 11 1 [22/Nov/2026:19:13:14 +0800] "GET /retry HTTP/1.1" 200 3 119 0.004 "127.0.0.1:8082, 127.0.0.1:8081" "502, 200" "-, 0.001" "0.000, 0.004" "nginxlab" lab 8080 1795345994.680`))
	f.Add(uint8(2), []byte(`{"time":"2026-11-22T19:13:14+08:00","remote_addr":"::1","request":"GET /a\"b HTTP/1.1","status":101,"up":"","x":"\u001b"}`))
	f.Add(uint8(3), []byte("example.com/a?b=1 2000.012 0.001 : 0.002 10.0.0.9:443 GET HTTP/1.1\n\nx"))
	f.Add(uint8(4), []byte(`bob|\x22|-, 0.5`))
	formats := make([]*AccessFormat, len(fuzzFormats))
	for i, d := range fuzzFormats {
		formats[i] = mustFormat(f, d)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		format := formats[int(which)%len(formats)]
		s := NewAccessScanner(bytes.NewReader(data), format, logline.Options{Source: "fuzz", MaxLineBytes: 256})
		for s.Scan() {
			if r := s.Record(); r != nil && (r.Status < 0 || r.Status > 999) {
				t.Fatalf("status %d", r.Status)
			}
		}
		if tally := s.Tally(); !tally.Balanced() || tally.Lines != int64(bytes.Count(data, []byte("\n"))+btoi(len(data) > 0 && data[len(data)-1] != '\n')) {
			t.Fatalf("tally %+v for %d bytes", tally, len(data))
		}
	})
}

// FuzzParseFormat compiles arbitrary format text, then parses the text
// itself as a line with it: neither may panic.
func FuzzParseFormat(f *testing.F) {
	for _, d := range fuzzFormats {
		f.Add(d)
	}
	f.Add(`log_format x escape=json "{\"a\":\"$a\"}" '$b';`)
	f.Add("log_format c '$status' # c\n ' ${msec}x';")
	f.Fuzz(func(t *testing.T, directive string) {
		format, err := ParseFormat(directive)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "nginx log_format: byte ") {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		_, _ = format.Parse(format.Text)
		_, _ = ParseConfigFormats(directive)
	})
}

// FuzzErrorLog feeds arbitrary input to the error-log scanner: it must not
// panic and must account for every line.
func FuzzErrorLog(f *testing.F) {
	f.Add([]byte(`2020/04/15 18:02:51 [error] 374#0: *1917238 send() failed (104: Connection reset by peer) while proxying upgraded connection, client: 172.28.25.222, server: localhost, request: "GET /ws HTTP/1.1", upstream: "http://172.28.72.77:8899/ws", host: "172.28.72.114:8443"`))
	f.Add([]byte("2019/10/30 23:26:34 [error] 205860#205860: *180289 FastCGI sent in stderr: \"PHP message: a\nPHP message: b\n\nc\" while reading response header from upstream, client: 1.2.3.4, server: s\nstray\n"))
	f.Add([]byte(`2026/11/22 10:00:00 [error] 7#7: *3 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: 0.0.0.0:9000, upstream: "127.0.0.1:9001", bytes from/to client:0/0, bytes from/to upstream:0/0`))
	f.Add([]byte(`2026/11/22 10:00:00 [error] 9#9: *5 x, client: 1.2.3.4, server: s, request: "GET /a", host: "evil HTTP/1.1", host: "real", referrer: "http://r/, client: 9.9.9.9"`))
	f.Add([]byte("2026/11/22 10:00:00 [notice] 1#1:\n2026/11/22 10:00:00 [oops] 1#1: x\n*1 y"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewErrorScanner(bytes.NewReader(data), logline.Options{Source: "fuzz", MaxLineBytes: 256})
		records := 0
		for s.Scan() {
			if r := s.Record(); r != nil {
				records++
				if r.Lines < 1 || r.Ref.Line < 1 {
					t.Fatalf("record %+v", r)
				}
			}
		}
		if tally := s.Tally(); !tally.Balanced() || tally.Records != int64(records) {
			t.Fatalf("tally %+v, %d records", tally, records)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
