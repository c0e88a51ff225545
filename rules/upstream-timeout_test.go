package rules

import (
	"strings"
	"testing"
	"time"

	"wiremortem/decoders/http"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// answered decodes a conversation's one exchange: the request at req,
// the response with status at resp.
func answered(in *Input, c *flows.Conversation, req, resp time.Duration, status int) *Input {
	stamp := func(d time.Duration) evidence.Stamp {
		return evidence.Stamp{Time: at(d), Ref: evidence.Ref{Source: "test.pcap", Packet: int64(c.ID)*1000 + 999}}
	}
	if in.HTTP == nil {
		in.HTTP = map[int]*http.Conversation{}
	}
	in.HTTP[c.ID] = &http.Conversation{Protocol: "http", Exchanges: []http.Exchange{{
		Request:  &http.Message{Start: stamp(req), End: stamp(req), Method: "GET", URI: "/api", Version: "HTTP/1.1", Complete: true},
		Response: &http.Message{Start: stamp(resp), End: stamp(resp), Version: "HTTP/1.1", Status: status, Complete: true},
	}}}
	return in
}

func TestUpstreamTimeout(t *testing.T) {
	const headerTimeout = "upstream timed out (110: Connection timed out) while reading response header from upstream"
	tests := []struct {
		name    string
		in      func(t *testing.T) *Input
		want    []string // "severity: flows" per incident
		summary string   // of the first
		cause   string   // a fragment of the first incident's first cause
	}{
		{
			// The upstream never answers nginx's SYNs; proxy_connect_timeout
			// (5 s) fires and the client gets 504.
			name: "connect timeout, measured from nginx's SYN to its 504",
			in: func(t *testing.T) *Input {
				client := conv(1, proxyClient, proxyNginx).handshake(0).data(flows.Client, 3*ms, 80).
					data(flows.Server, 5*s+5*ms, 300).fin(flows.Client, 5*s+6*ms, ms).done()
				attempt := conv(2, nginxOut, proxyUpstream).syn(4*ms, 1*s+4*ms, 3*s+4*ms).done()
				in := answered(input(10*s, client, attempt), client, 3*ms, 5*s+5*ms, 504)
				return withLogs(t, in,
					logText{"nginx-error", "error.log", nginxError(5*s, "error", 7, "upstream timed out (110: Connection timed out) while connecting to upstream", "GET /api HTTP/1.1", "http://"+proxyUpstream+"/api")},
					logText{"nginx-access", "access.log", nginxAccess(5*s, proxyClient, 7, "GET /api HTTP/1.1", 504, proxyUpstream, "504", "5.001", "5.001")})
			},
			want:    []string{"medium: " + sortedJoin([]string{proxyClient + ">" + proxyNginx, nginxOut + ">" + proxyUpstream})},
			summary: "nginx timed out connecting to upstream 10.0.0.11:8080 after 5.0 s (proxy_connect_timeout, about 5.0 s here); client 10.0.0.5:41000 got 504 for GET /api.",
			cause:   "Upstream 10.0.0.11:8080 did not complete the connection within proxy_connect_timeout (5.0 s)",
		},
		{
			// No capture: the wait comes from $upstream_response_time.
			name: "five header timeouts in the logs alone",
			in: func(t *testing.T) *Input {
				var errs, access strings.Builder
				for i := range 5 {
					d := 60*s + time.Duration(i)*s
					errs.WriteString(nginxError(d, "error", 10+i, headerTimeout, "GET /report HTTP/1.1", "http://"+proxyUpstream+"/report"))
					access.WriteString(nginxAccess(d, "10.0.0.5:4100"+string(rune('0'+i)), 10+i, "GET /report HTTP/1.1", 504, proxyUpstream, "504", "60.001", "60.001"))
				}
				return withLogs(t, input(100*s), logText{"nginx-error", "error.log", errs.String()}, logText{"nginx-access", "access.log", access.String()})
			},
			want: []string{"high: " + sortedJoin([]string{"10.0.0.5:41000>" + proxyUpstream, "10.0.0.5:41001>" + proxyUpstream, "10.0.0.5:41002>" + proxyUpstream,
				"10.0.0.5:41003>" + proxyUpstream, "10.0.0.5:41004>" + proxyUpstream})},
			summary: "nginx timed out 5 times over 4.0 s waiting for the response header from upstream 10.0.0.11:8080 after 60.0 s (proxy_read_timeout, about 60.0 s here); clients on 1 host got 504 for 5 requests.",
			cause:   "Upstream 10.0.0.11:8080 took the request and sent no response header within proxy_read_timeout (60.0 s)",
		},
		{
			name: "a traced blocking connect the kernel gave up on",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(200*s),
					logText{"strace", "app.strace", "77  12:00:00.000000 connect(5, {sa_family=AF_INET, sin_port=htons(5432), sin_addr=inet_addr(\"10.0.0.20\")}, 16) = -1 ETIMEDOUT (Connection timed out) <127.312000>\n"})
			},
			want:    []string{"medium: process 77>10.0.0.20:5432"},
			summary: "Process 77 timed out connecting to upstream 10.0.0.20:5432 after 127 s (net.ipv4.tcp_syn_retries).",
			cause:   "Upstream 10.0.0.20:5432 never answered the SYNs",
		},
		{
			// The upstream of a WebSocket stops reading: nginx cannot write
			// to it, and proxy_send_timeout fires, not the idle timer.
			name: "an upgraded connection whose upstream stopped reading",
			in: func(t *testing.T) *Input {
				client := conv(1, proxyClient, proxyNginx).handshake(0).data(flows.Client, 3*ms, 300).data(flows.Client, 1*s, 65536).
					rst(flows.Server, 11*s, 0).done()
				attempt := conv(2, nginxOut, proxyUpstream).handshake(4*ms).data(flows.Client, 5*ms, 300).data(flows.Client, 1*s, 65536).
					zeroWindow(flows.Server, 1*s+ms, -1, 4, 65536).rst(flows.Client, 11*s, 65536).done()
				return withLogs(t, input(20*s, client, attempt),
					logText{"nginx-error", "error.log", nginxError(11*s, "info", 7, "upstream timed out (110: Connection timed out) while proxying upgraded connection", "GET /ws HTTP/1.1", "http://"+proxyUpstream+"/ws")},
					logText{"nginx-access", "access.log", nginxAccess(11*s, proxyClient, 7, "GET /ws HTTP/1.1", 101, proxyUpstream, "101", "11.000", "11.000")})
			},
			want:    []string{"medium: " + sortedJoin([]string{proxyClient + ">" + proxyNginx, nginxOut + ">" + proxyUpstream})},
			summary: "nginx timed out on an upgraded (WebSocket) connection to upstream 10.0.0.11:8080 after 10.0 s (proxy_send_timeout, about 10.0 s here); it closed client 10.0.0.5:41000's connection.",
			cause:   "Upstream 10.0.0.11:8080 stopped taking data: nginx could not write to it within proxy_send_timeout (10.0 s)",
		},
		{
			name: "a FastCGI upstream on a unix socket",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(100*s),
					logText{"nginx-error", "error.log", nginxError(30*s, "error", 3, headerTimeout, "POST /index.php HTTP/1.1", "fastcgi://unix:/run/php/fpm.sock:")})
			},
			want:    []string{"medium: 10.0.0.5>unix:/run/php/fpm.sock:"},
			summary: "nginx timed out waiting for the response header from upstream unix:/run/php/fpm.sock: (fastcgi_read_timeout).",
		},
		{
			name: "healthy: a client that was slow to send its headers",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(100*s),
					logText{"nginx-error", "error.log", "2024/05/01 12:00:30 [info] 10#10: *3 client timed out (110: Connection timed out) while reading client request headers, client: 10.0.0.5, server: lab\n"})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "upstream-timeout", tt.in(t))
			var sets []string
			for _, inc := range got {
				checkIncident(t, inc)
				sets = append(sets, inc.Severity.String()+": "+flowSet(inc))
			}
			if strings.Join(sets, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("incidents\n%s\nwant\n%s", strings.Join(sets, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(got) == 0 {
				return
			}
			if got[0].Summary != tt.summary {
				t.Errorf("summary\n got %q\nwant %q", got[0].Summary, tt.summary)
			}
			if tt.cause != "" && !strings.HasPrefix(got[0].Causes[0].Text, tt.cause) {
				t.Errorf("first cause %q, want it to start %q", got[0].Causes[0].Text, tt.cause)
			}
		})
	}
}
