package analysis

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"wiremortem/internal/testenv"
)

// TestZeekHTTPLog compares our HTTP exchanges with Zeek's http.log
// baselines for the same traces (zeek/zeek, BSD-3, see
// ../shared/corpus/README.md): per request, the endpoints, its place in
// the conversation (trans_depth), method, Host, URI, version, User-Agent,
// the status and its reason, the 1xx sent before it, and both bodies'
// lengths. One of them answers an HTTP/0.9 request (a line alone) with
// the body alone, up to the close.
func TestZeekHTTPLog(t *testing.T) {
	const tr, bl = "zeek/testing/btest/Traces/", "zeek/testing/btest/Baseline/"
	tests := []struct{ trace, baseline string }{
		{"wikipedia.pcap", "opt.basic/http.log"},
		{"mixed-vlan-mpls.pcap", "core.vlan-mpls/http.log"},
		{"snap-tcp.pcap", "scripts.base.protocols.snap.snap-tcp/http.log"},
		{"http/websocket.pcap", "scripts.base.protocols.http.101-switching-protocols/http.log"},
		{"http/connect-with-header.pcap", "scripts.base.protocols.http.http-connect-with-header/http.log"},
	}
	fields := []string{"id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "trans_depth", "method", "host", "uri", "version", "user_agent",
		"request_body_len", "response_body_len", "status_code", "status_msg", "info_code"}
	for _, tt := range tests {
		t.Run(tt.trace, func(t *testing.T) {
			var want []string
			for _, row := range readZeekLog(t, testenv.Corpus(t, bl+tt.baseline)) {
				want = append(want, zeekRow(row, fields))
			}
			res, err := Run(context.Background(), []Input{{Path: testenv.Corpus(t, tr+tt.trace), Kind: KindCapture}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			var got []string
			for _, c := range res.Document.Conversations {
				// Zeek leaves out conversations whose start it did not
				// see; we decode them from the first line that starts a
				// message, marked partial.
				if c.HTTP == nil || c.Originator != "syn" {
					continue
				}
				for i, x := range c.HTTP.Exchanges {
					req := x.Request
					row := map[string]string{
						"id.orig_h": c.Client.Addr().String(), "id.orig_p": strconv.Itoa(int(c.Client.Port())),
						"id.resp_h": c.Server.Addr().String(), "id.resp_p": strconv.Itoa(int(c.Server.Port())),
						"trans_depth": strconv.Itoa(i + 1), "method": req.Method, "host": dash(req.Headers.Get("Host")), "uri": req.URI,
						"version": strings.TrimPrefix(req.Version, "HTTP/"), "user_agent": dash(req.Headers.Get("User-Agent")),
						"request_body_len":  strconv.FormatInt(req.BodyBytes, 10),
						"response_body_len": "0", "status_code": "-", "status_msg": "-", "info_code": "-",
					}
					if r := x.Response; r != nil {
						// Zeek logs the reply's version, "<empty>" for an
						// empty reason (and for the status-less answer to
						// an HTTP/0.9 request, status 0), and a 1xx final
						// status (101) as informational too.
						row["version"] = strings.TrimPrefix(r.Version, "HTTP/")
						row["response_body_len"] = strconv.FormatInt(r.BodyBytes, 10)
						row["status_code"], row["status_msg"] = strconv.Itoa(r.Status), cmp.Or(r.Reason, "<empty>")
						if r.Status/100 == 1 {
							row["info_code"] = row["status_code"]
						}
					}
					if n := len(x.Interim); n > 0 {
						row["info_code"] = strconv.Itoa(x.Interim[n-1])
					}
					got = append(got, zeekRow(row, fields))
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("exchanges differ from Zeek's http.log:\n  Zeek %s\n    us %s", strings.Join(want, "\n  Zeek "), strings.Join(got, "\n    us "))
			}
		})
	}
}

// zeekRow is a row's fields, in order, as one comparable line.
func zeekRow(row map[string]string, fields []string) string {
	var b strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&b, "%s=%s ", f, row[f])
	}
	return b.String()
}
