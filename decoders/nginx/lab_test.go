package nginx

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lab logs in testdata/lab_*.log come from a real nginx driven by
// testdata/regen.sh (see there). Every line must parse, the three access
// logs must agree on every request, and every error line about a request
// must join to its access line by connection serial number.

// labTextFormat is lab_text of testdata/log_formats.conf.
const labTextFormat = `'$remote_addr:$remote_port $connection $connection_requests [$time_local] "$request" $status $body_bytes_sent $bytes_sent ` +
	`$request_time "$upstream_addr" "$upstream_status" "$upstream_connect_time" "$upstream_response_time" "$http_user_agent" $host $server_port $msec'`

func labFormats(t *testing.T) map[string]*AccessFormat {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join("testdata", "log_formats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	formats, err := ParseConfigFormats(string(conf))
	if err != nil {
		t.Fatal(err)
	}
	if formats["lab_text"].Text != mustFormat(t, labTextFormat).Text {
		t.Fatalf("lab_text in log_formats.conf is not labTextFormat")
	}
	return formats
}

func TestLabAccessLogsAgree(t *testing.T) {
	formats := labFormats(t)
	var logs [3][]AccessRecord
	for i, name := range []string{"combined", "lab_text", "lab_json"} {
		file := map[string]string{"combined": "lab_access_combined.log", "lab_text": "lab_access_text.log", "lab_json": "lab_access_json.log"}[name]
		recs, bad, _ := scanAccessFile(t, filepath.Join("testdata", file), formats[name])
		if len(bad) != 0 {
			t.Errorf("%s: unparsed %v", file, bad)
		}
		logs[i] = recs
	}
	combined, text, js := logs[0], logs[1], logs[2]
	if len(combined) != 16 || len(text) != len(combined) || len(js) != len(combined) {
		t.Fatalf("records: combined %d, text %d, json %d", len(combined), len(text), len(js))
	}
	for i := range combined {
		c, x, j := combined[i], text[i], js[i]
		if c.Request != x.Request || x.Request != j.Request || c.Status != x.Status || x.Status != j.Status ||
			c.RemoteAddr != x.RemoteAddr || x.RemoteAddr != j.RemoteAddr {
			t.Errorf("line %d: request/status/address differ:\n%+v\n%+v\n%+v", i+1, c, x, j)
		}
		if x.RemotePort == 0 || x.RemotePort != j.RemotePort || x.Connection == 0 || x.Connection != j.Connection ||
			x.ConnectionRequests != j.ConnectionRequests || !x.Time.Equal(j.Time) {
			t.Errorf("line %d: port/connection/time differ:\n%+v\n%+v", i+1, x, j)
		}
		// $time_local has whole seconds, $msec milliseconds.
		if d := x.Time.Sub(c.Time); d < 0 || d >= time.Second {
			t.Errorf("line %d: $msec %v is not within the second of $time_local %v", i+1, x.Time, c.Time)
		}
	}

	byURI := map[string]AccessRecord{}
	for _, r := range text {
		byURI[r.URI] = r
	}
	retry := byURI["/retry"].Upstreams
	if len(retry) != 2 || retry[0].Addr != "127.0.0.1:8082" || retry[0].Status != 502 || retry[0].ConnectTime != 0 ||
		retry[1].AddrPort != netip.MustParseAddrPort("127.0.0.1:8081") || retry[1].Status != 200 || retry[1].Group != 0 {
		t.Errorf("/retry upstreams %+v", retry)
	}
	redirect := byURI["/redirect"].Upstreams
	if len(redirect) != 2 || redirect[0].Status != 502 || redirect[1].Status != 200 || redirect[1].Group != 1 {
		t.Errorf("/redirect upstreams %+v", redirect)
	}
	if r := byURI["/ws/flood"]; r.Status != 101 || r.BodyBytesSent < 1<<20 || r.RequestTime < 2*time.Second {
		t.Errorf("/ws/flood %+v", r)
	}
	if r := text[1]; r.Method != "GET" || r.URI != "/static/missing" || r.Status != 404 {
		t.Errorf("line 2 %+v", r)
	}
	if r := text[3]; r.ConnectionRequests != 1 || text[4].ConnectionRequests != 2 || r.Connection != text[4].Connection || r.RemotePort != text[4].RemotePort {
		t.Errorf("keep-alive lines 4-5: %+v %+v", r, text[4])
	}
	if ua := text[13].Header("user_agent"); ua != `café "quoted"` {
		t.Errorf("escaped user agent %q", ua)
	}
	if ua := js[13].Header("user_agent"); ua != `café "quoted"` {
		t.Errorf("JSON-escaped user agent %q", ua)
	}
	if req := text[14].Request; !strings.HasPrefix(req, "\x16\x03\x01\x00\xa5") || text[14].Method != "" || text[14].Status != 400 {
		t.Errorf("TLS hello request %q", req)
	}
}

func TestLabErrorLogJoinsAccessLog(t *testing.T) {
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatalf("no zone database: %v", err)
	}
	errs, bad, tally := scanErrorFile(t, filepath.Join("testdata", "lab_error.log"), shanghai)
	if len(bad) != 0 || tally.Records != tally.Lines {
		t.Errorf("unparsed %v, tally %+v", bad, tally)
	}
	access, _, _ := scanAccessFile(t, filepath.Join("testdata", "lab_access_text.log"), labFormats(t)["lab_text"])
	byConnection := map[uint64]AccessRecord{}
	for _, r := range access {
		byConnection[r.Connection] = r
	}

	type want struct {
		level   Level
		call    string
		errno   int
		context string
	}
	wants := map[string]want{
		"GET /static/missing HTTP/1.1": {LevelError, "open", 2, ""},
		"GET /refused HTTP/1.1":        {LevelError, "connect", 111, "connecting to upstream"},
		"GET /silent HTTP/1.1":         {LevelError, "", 110, "reading response header from upstream"},
		"GET /ws/reset HTTP/1.1":       {LevelError, "recv", 104, "proxying upgraded connection"},
		"GET /ws/idle HTTP/1.1":        {LevelInfo, "", 110, "proxying upgraded connection"},
		"GET /ws/flood HTTP/1.1":       {LevelInfo, "", 110, "proxying upgraded connection"},
	}
	joined := 0
	for _, e := range errs {
		if e.Connection == 0 {
			if e.Level != LevelNotice {
				t.Errorf("line %d: no connection: %+v", e.Ref.Line, e)
			}
			continue
		}
		a, ok := byConnection[e.Connection]
		if !ok {
			t.Errorf("line %d: *%d has no access line", e.Ref.Line, e.Connection)
			continue
		}
		joined++
		if e.Request != a.Request || e.ClientAddr != a.RemoteAddr {
			t.Errorf("line %d: *%d request %q client %v; access has %q %v", e.Ref.Line, e.Connection, e.Request, e.ClientAddr, a.Request, a.RemoteAddr)
		}
		// nginx logs the access line when the request ends; the error came
		// during it. The error log's wall time is Asia/Shanghai.
		start := a.Time.Add(-a.RequestTime).Truncate(time.Second)
		if e.Time.Before(start) || e.Time.After(a.Time) {
			t.Errorf("line %d: error at %v outside its request [%v, %v]", e.Ref.Line, e.Time, start, a.Time)
		}
		if w, ok := wants[e.Request]; ok && (e.Level != w.level || e.Call != w.call || e.Errno != w.errno || e.Context != w.context) {
			t.Errorf("line %d: %s %q errno %d context %q; want %+v", e.Ref.Line, e.Level, e.Call, e.Errno, e.Context, w)
		}
		delete(wants, e.Request)
	}
	if joined != 11 || len(wants) != 0 {
		t.Errorf("%d error lines joined; never seen: %v", joined, wants)
	}
}
