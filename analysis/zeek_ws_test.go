package analysis

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"wiremortem/internal/testenv"
)

// TestZeekWebSocketLog compares our upgrade handshakes with Zeek's
// websocket.log baselines for the same traces (zeek/zeek, BSD-3, see
// ../shared/corpus/README.md): endpoints, host, URI, user agent, the
// subprotocol the server chose, and the extensions each side offered or
// accepted.
func TestZeekWebSocketLog(t *testing.T) {
	const tr, bl = "zeek/testing/btest/Traces/", "zeek/testing/btest/Baseline/"
	tests := []struct{ trace, baseline string }{
		{"http/websocket.pcap", "scripts.base.protocols.http.101-switching-protocols/websocket.log"},
		{"websocket/jupyter-websocket.pcap", "scripts.base.protocols.websocket.jupyter-websocket/websocket.log"},
		{"websocket/broker-websocket.pcap", "scripts.base.protocols.websocket.broker-websocket/websocket.log"},
		{"websocket/wstunnel-ssh.pcap", "scripts.base.protocols.websocket.wstunnel-ssh/websocket.log"},
	}
	for _, tt := range tests {
		t.Run(tt.trace, func(t *testing.T) {
			want := readZeekLog(t, testenv.Corpus(t, bl+tt.baseline))
			res, err := Run(context.Background(), []Input{{Path: testenv.Corpus(t, tr+tt.trace), Kind: KindCapture}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			var got []map[string]string
			for _, c := range res.Document.Conversations {
				if c.HTTP == nil {
					continue
				}
				for _, u := range c.HTTP.Upgrades {
					if u.Protocol != "websocket" || u.Response == nil || u.Response.Status != 101 {
						continue
					}
					req, resp := u.Request.Headers, u.Response.Headers
					got = append(got, map[string]string{
						"id.orig_h": c.Client.Addr().String(), "id.resp_p": strconv.Itoa(int(c.Server.Port())),
						"host": req.Get("Host"), "uri": u.Request.URI, "user_agent": dash(req.Get("User-Agent")),
						"subprotocol": dash(resp.Get("Sec-WebSocket-Protocol")), "client_protocols": dash(req.Get("Sec-WebSocket-Protocol")),
						"server_extensions": dash(resp.Get("Sec-WebSocket-Extensions")), "client_extensions": dash(req.Get("Sec-WebSocket-Extensions")),
					})
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d WebSocket handshakes, Zeek logged %d", len(got), len(want))
			}
			for i, w := range want {
				for field, v := range w {
					g, checked := got[i][field]
					if !checked {
						continue
					}
					// Zeek logs lists with ","; headers list with ", ".
					if strings.ReplaceAll(g, ", ", ",") != v {
						t.Errorf("handshake %d %s: Zeek %q, us %q", i, field, v, g)
					}
				}
			}
		})
	}
}

func readZeekLog(t *testing.T, path string) []map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fields []string
	var out []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#fields\t"):
			fields = strings.Split(line, "\t")[1:]
		case strings.HasPrefix(line, "ts\t"):
			fields = strings.Split(line, "\t")
		case strings.HasPrefix(line, "#") || fields == nil || line == "":
		default:
			cols := strings.Split(line, "\t")
			row := map[string]string{}
			for i, f := range fields {
				if i < len(cols) && f != "ts" && f != "uid" {
					row[f] = cols[i]
				}
			}
			out = append(out, row)
		}
	}
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
