package nginx

import (
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/internal/testenv"
)

// Tests over public test data read in place from ../shared/corpus (see its
// README.md for sources and commits). Each asserts that every line is
// either parsed or counted, and checks exact fields on a few lines.

func scanAccessFile(t *testing.T, path string, format *AccessFormat) ([]AccessRecord, []logline.Unparsed, logline.Tally) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := NewAccessScanner(f, format, logline.Options{Source: path})
	var recs []AccessRecord
	var bad []logline.Unparsed
	for s.Scan() {
		if r := s.Record(); r != nil {
			recs = append(recs, *r)
		} else {
			bad = append(bad, *s.Unparsed())
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	tally := s.Tally()
	if !tally.Balanced() || tally.Records != int64(len(recs)) || tally.Unparsed() != int64(len(bad)) {
		t.Errorf("%s: tally does not account for every line: %+v", path, tally)
	}
	return recs, bad, tally
}

func scanErrorFile(t *testing.T, path string, clock *time.Location) ([]ErrorRecord, []logline.Unparsed, logline.Tally) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := NewErrorScanner(f, logline.Options{Source: path, Clock: clock})
	var recs []ErrorRecord
	var bad []logline.Unparsed
	for s.Scan() {
		if r := s.Record(); r != nil {
			recs = append(recs, *r)
		} else {
			bad = append(bad, *s.Unparsed())
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	tally := s.Tally()
	if !tally.Balanced() || tally.Records != int64(len(recs)) || tally.Unparsed() != int64(len(bad)) {
		t.Errorf("%s: tally does not account for every line: %+v", path, tally)
	}
	return recs, bad, tally
}

func unparsedLines(bad []logline.Unparsed) []int64 {
	var lines []int64
	for _, u := range bad {
		lines = append(lines, u.Ref.Line)
	}
	return lines
}

// elastic/beats filebeat/module/nginx/error/test/error.log (0073692d) and
// elastic/integrations nginx error test-error-raw.log (1b03b772). The
// expected values are those of the upstream expected JSON: levels, pids,
// tids, connection ids, and the FastCGI message as one event of 3 lines.
func TestCorpusElasticErrorLogs(t *testing.T) {
	type want struct {
		level      Level
		pid, tid   int64
		connection uint64
		lines      int
	}
	beats := []want{
		{LevelError, 54053, 0, 1, 1},
		{LevelError, 54053, 0, 3, 1},
		{LevelError, 205860, 205860, 180289, 3},
		{LevelError, 54053, 0, 3, 1},
	}
	files := []struct {
		path string
		want []want
	}{
		{"elastic-beats/filebeat/module/nginx/error/test/error.log", beats},
		{"elastic-integrations/packages/nginx/data_stream/error/_dev/test/pipeline/test-error-raw.log",
			append(beats[:4:4], want{LevelWarn, 15910, 0, 149074, 1})},
	}
	for _, file := range files {
		t.Run(file.path, func(t *testing.T) {
			recs, bad, tally := scanErrorFile(t, testenv.Corpus(t, file.path), nil)
			if len(bad) != 0 || tally.Lines != int64(len(file.want)+2) {
				t.Errorf("unparsed %+v, tally %+v", bad, tally)
			}
			if len(recs) != len(file.want) {
				t.Fatalf("%d records, want %d", len(recs), len(file.want))
			}
			for i, w := range file.want {
				r := recs[i]
				if r.Level != w.level || r.PID != w.pid || r.TID != w.tid || r.Connection != w.connection || r.Lines != w.lines {
					t.Errorf("record %d: level %s pid %d tid %d conn %d lines %d; want %+v", i, r.Level, r.PID, r.TID, r.Connection, r.Lines, w)
				}
			}
			if r := recs[0]; r.Referrer != "http://localhost:8080/" || r.Host != "localhost:8080" || r.Errno != 2 || r.Request != "GET /favicon.ico HTTP/1.1" {
				t.Errorf("first record %+v", r)
			}
			if r := recs[3]; r.Request != "GET /pysio HTTP/1.1" || r.Time != time.Date(2019, 11, 5, 14, 50, 44, 0, time.UTC) {
				t.Errorf("fourth record %+v", r)
			}
		})
	}
	t.Run("warn line", func(t *testing.T) {
		recs, _, _ := scanErrorFile(t, testenv.Corpus(t, files[1].path), nil)
		r := recs[4]
		if r.Message != "an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/8/65/0000015658" ||
			r.Context != "reading upstream" || r.Client != "1.1.1.1" || r.Server != "service[.]domain[.]com" ||
			r.Request != "GET /api/?tkd=343 HTTP/1.1" || r.Upstream != "https://2.2.2.2:443/api/?tkd=343" ||
			r.UpstreamAddr != netip.MustParseAddrPort("2.2.2.2:443") || r.Referrer != "https://service[.]domain[.]com/api/?tkd=343" {
			t.Errorf("warn record %+v", r)
		}
	})
}

// nginx-issue-excerpts/error_log_excerpts.log: real lines quoted from
// GitHub issues among "# SOURCE" comments; some lost their date prefix or
// carry a docker-compose prefix, as posted.
func TestCorpusIssueExcerpts(t *testing.T) {
	recs, bad, tally := scanErrorFile(t, testenv.Corpus(t, "nginx-issue-excerpts/error_log_excerpts.log"), nil)
	if tally.Lines != 45 || tally.Records != 13 || tally.ParsedLines != 14 || tally.UnparsedLines[ReasonNoTimestamp] != 31 {
		t.Errorf("tally %+v", tally)
	}
	for _, u := range bad {
		if u.Reason != ReasonNoTimestamp || u.Excerpt == "" {
			t.Errorf("unparsed %+v", u)
		}
	}
	byLine := map[int64]ErrorRecord{}
	for _, r := range recs {
		byLine[r.Ref.Line] = r
	}
	// amidaware/tacticalrmm#2311: the WebSocket reset.
	if r := byLine[4]; r.Connection != 5035166 || r.Call != "recv" || r.Errno != 104 || r.Context != "proxying upgraded connection" ||
		r.Client != "ip_client" || r.ClientAddr.IsValid() || r.Upstream != "http://127.0.0.1:9235/natsws" || r.Host != "api.domain.com.br:443" {
		t.Errorf("line 4: %+v", r)
	}
	// noVNC#909: upstream timed out while connecting.
	if r := byLine[16]; r.Errno != 110 || r.Context != "connecting to upstream" || r.UpstreamAddr != netip.MustParseAddrPort("193.18.135.200:6080") {
		t.Errorf("line 16: %+v", r)
	}
	// foundryvtt-docker#1175: refused, with a referrer, HTTP/2.
	if r := byLine[39]; r.Errno != 111 || r.Request != "GET /favicon.ico HTTP/2.0" || r.Referrer != "https://foundry.redacted.org/" || r.Connection != 1041 {
		t.Errorf("line 39: %+v", r)
	}
	// django/channels#1021 was cut with "[...]" by its poster, and the
	// comment line after it reads as a continuation: kept, not lost.
	if r := byLine[9]; r.Lines != 2 || r.Errno != 104 {
		t.Errorf("line 9: %+v", r)
	}
}

// crowdsecurity/hub .tests (b03cb59b): error logs with an IPv6 client, an
// empty server name, and access lines mixed in.
func TestCorpusCrowdsecErrorLogs(t *testing.T) {
	t.Run("req_limit_exceeded", func(t *testing.T) {
		recs, bad, _ := scanErrorFile(t, testenv.Corpus(t, "crowdsec-hub/.tests/nginx_req_limit_exceeded/nginx_req_limit_exceeded.log"), nil)
		if len(recs) != 9 || len(bad) != 0 {
			t.Fatalf("%d records, unparsed %+v", len(recs), bad)
		}
		r := recs[0]
		if r.Message != `limiting requests, excess: 5.428 by zone "default_root_zone"` || r.ClientAddr != netip.MustParseAddr("::1") ||
			r.Server != "" || r.Host != "la03.d.sb" || r.Connection != 42952950 {
			t.Errorf("first record %+v", r)
		}
		if r := recs[6]; r.Connection != 16670560058 || r.Request != "POST https://example.com/" || r.Referrer != "https://example.com/?referrer=/" {
			t.Errorf("record 7 %+v", r)
		}
	})
	t.Run("generic-bf", func(t *testing.T) {
		recs, bad, _ := scanErrorFile(t, testenv.Corpus(t, "crowdsec-hub/.tests/nginx-http-generic-bf/nginx-http-generic-bf.log"), nil)
		if len(recs) != 16 || len(bad) != 6 {
			t.Fatalf("%d records, %d unparsed", len(recs), len(bad))
		}
		if r := recs[0]; r.Message != `user "foo" was not found in "/tmp/a.htpasswd"` || r.Server != "_" || r.Connection != 17 {
			t.Errorf("first record %+v", r)
		}
	})
}

func TestCorpusAccessLogs(t *testing.T) {
	combined := mustFormat(t, "combined")
	vhost := mustFormat(t, `'$host $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"'`)
	tests := []struct {
		path         string
		format       *AccessFormat
		records      int
		unparsedAt   []int64
		firstRequest string
	}{
		// elastic/integrations nginx access test-access.log (a185e7f4): 12
		// combined lines and 2 with a virtual host first.
		{"elastic-integrations/packages/nginx/data_stream/access/_dev/test/pipeline/test-access.log", combined, 12, []int64{13, 14}, "GET / HTTP/1.1"},
		{"elastic-integrations/packages/nginx/data_stream/access/_dev/test/pipeline/test-access.log", vhost, 2, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, "GET /A%20Beka%20G1%20Howe/029_AND_30/15%20reading%20elephants.mp4 HTTP/1.1"},
		// tstack/lnav test/ (bb0005f9).
		{"lnav/test/logfile_access_log.0", combined, 3, nil, "GET /vmw/cgi/tramp HTTP/1.0"},
		{"lnav/test/logfile_access_log.1", combined, 1, nil, ""},
		{"lnav/test/logfile_bad_access_log.0", combined, 2, []int64{2}, "GET /vmw/cgi/tramp HTTP/1.0"},
		{"lnav/test/logfile_syslog_with_access_log.0", combined, 0, []int64{1, 2, 3, 4, 5}, ""},
		// crowdsecurity/hub .tests (b03cb59b): binary request lines answered
		// with 400, and combined lines with vhost prefixes and error lines
		// mixed in.
		{"crowdsec-hub/.tests/nginx-http-malformed/nginx_http-logs.log", combined, 12, nil, "lv|'|'|VHJvamFuX0M0NkY2RTk=|'|'|MARK|'|'|user|'|'|2013-11-22|'|'||'|'|Win XP|'|'|No|'|'|0.6.4|'|'|..|'|'||'|'|[endof]"},
		{"crowdsec-hub/.tests/nginx_http-logs/nginx_http-logs.log", combined, 4, []int64{4, 5, 6, 8, 9}, "GET /.well-known/acme-challenge/FMuukC2JOJ5HKmLBujjE_BkDo HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			recs, bad, _ := scanAccessFile(t, testenv.Corpus(t, tt.path), tt.format)
			if len(recs) != tt.records {
				t.Errorf("%d records, want %d", len(recs), tt.records)
			}
			if got := unparsedLines(bad); !slices.Equal(got, tt.unparsedAt) {
				t.Errorf("unparsed at lines %v, want %v", got, tt.unparsedAt)
			}
			if len(recs) > 0 && recs[0].Request != tt.firstRequest {
				t.Errorf("first request %q, want %q", recs[0].Request, tt.firstRequest)
			}
		})
	}
}

func TestCorpusAccessExactFields(t *testing.T) {
	recs, _, _ := scanAccessFile(t, testenv.Corpus(t, "elastic-integrations/packages/nginx/data_stream/access/_dev/test/pipeline/test-access.log"), mustFormat(t, "combined"))
	r := recs[1]
	if r.RemoteAddr != netip.MustParseAddr("67.43.156.13") || !r.Time.Equal(time.Date(2016, 10, 25, 12, 49, 34, 0, time.UTC)) ||
		r.Status != 404 || r.BodyBytesSent != 571 || r.URI != "/favicon.ico" || r.Header("referer") != "http://localhost:8080/" ||
		r.Header("user_agent") != "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/54.0.2840.59 Safari/537.36" {
		t.Errorf("line 2: %+v", r)
	}
	if _, off := r.Time.Zone(); off != 7200 {
		t.Errorf("line 2 offset %d, want +0200", off)
	}

	malformed, _, _ := scanAccessFile(t, testenv.Corpus(t, "crowdsec-hub/.tests/nginx-http-malformed/nginx_http-logs.log"), mustFormat(t, "combined"))
	if r := malformed[7]; r.Request[:3] != "\x16\x03\x01" || r.Method != "" || r.Status != 400 {
		t.Errorf("TLS hello line: %+v", r)
	}
	if r := malformed[4]; r.Request != "HELP" || r.Method != "" {
		t.Errorf("HELP line: %+v", r)
	}

	// lnav's custom-format sample: two variables nginx has (host, port) and
	// two it does not know here, kept as text by name.
	custom := mustFormat(t, `'$host:$server_port $remote_addr $request_id $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time_us'`)
	lnav, bad, _ := scanAccessFile(t, testenv.Corpus(t, "lnav/test/logfile_regexp_access_log.0"), custom)
	if len(bad) != 0 || len(lnav) != 2 {
		t.Fatalf("%d records, unparsed %v", len(lnav), bad)
	}
	if r := lnav[0]; r.Host != "localhost" || r.ServerPort != 443 || r.RemoteUser != "jsmith" || r.Protocol != "HTTP/2.0" ||
		len(r.Other) != 2 || r.Other[0] != (Variable{"request_id", "1j0vhgd"}) || r.Other[1] != (Variable{"request_time_us", "116075"}) {
		t.Errorf("lnav custom line 1: %+v", r)
	}

	// crowdsecurity/hub nginx-proxy-manager-logs: NPM's own "proxy" format;
	// the lines of NPM's other formats and the error lines are counted.
	npm := mustFormat(t, `'[$time_local] $upstream_cache_status $upstream_status $status - $request_method $scheme $host "$request_uri" [Client $remote_addr] [Length $body_bytes_sent] [Gzip $gzip_ratio] [Sent-to $server] "$http_user_agent" "$http_referer"'`)
	proxied, bad, _ := scanAccessFile(t, testenv.Corpus(t, "crowdsec-hub/.tests/nginx-proxy-manager-logs/nginx-proxy-manager-logs.log"), npm)
	if len(proxied) != 6 || len(bad) != 8 {
		t.Errorf("NPM: %d records, %d unparsed (%v)", len(proxied), len(bad), unparsedLines(bad))
	}
	if r := proxied[0]; r.Method != "GET" || r.URI != "/sdfdsf" || r.Status != 404 || r.RemoteAddr != netip.MustParseAddr("1.2.3.4") ||
		len(r.Upstreams) != 1 || r.Upstreams[0].Status != 404 {
		t.Errorf("NPM line 1: %+v", r)
	}
}
