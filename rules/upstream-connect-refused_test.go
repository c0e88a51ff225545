package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
)

// The proxy rules' cast: a client, nginx, and its upstreams.
const (
	proxyClient   = "10.0.0.5:41000"
	proxyNginx    = "10.0.0.10:80"
	nginxOut      = "10.0.0.10:36000"
	proxyUpstream = "10.0.0.11:8080"
)

// nginxError writes an nginx error line at t0+at (whole seconds, as
// nginx writes them) for request *conn.
func nginxError(at time.Duration, level string, conn int, message, request, upstream string) string {
	return fmt.Sprintf("%s [%s] 10#10: *%d %s, client: 10.0.0.5, server: lab, request: %q, upstream: %q, host: \"lab\"\n",
		t0.Add(at).Format("2006/01/02 15:04:05"), level, conn, message, request, upstream)
}

// nginxAccess writes an access line in the lab's format.
func nginxAccess(at time.Duration, client string, conn int, request string, status int, upstreams, ustatus, rt, urt string) string {
	addr, port, _ := strings.Cut(client, ":")
	return fmt.Sprintf("%s - - [%s] %q %d 157 \"-\" \"curl\" rport=%s conn=%d reqs=1 upstream=%s ustatus=%s rt=%s uct=- urt=%s\n",
		addr, t0.Add(at).Format("02/Jan/2006:15:04:05 -0700"), request, status, port, conn, upstreams, ustatus, rt, urt)
}

// proxiedRequest is a client's request through nginx that nginx answered
// at once (an error page), closed by the client.
func proxiedRequest(id int, client string, at time.Duration) *flows.Conversation {
	return conv(id, client, proxyNginx).handshake(at).data(flows.Client, at+3*ms, 80).
		data(flows.Server, at+5*ms, 300).fin(flows.Client, at+6*ms, 10*time.Microsecond).fin(flows.Server, at+7*ms, -1).done()
}

// refusedConnect is nginx's SYN to the upstream answered by RST.
func refusedConnect(id int, from, upstream string, at time.Duration) *flows.Conversation {
	return conv(id, from, upstream).syn(at).refused(at + 10*time.Microsecond).done()
}

const refused = "connect() failed (111: Connection refused) while connecting to upstream"

func TestUpstreamConnectRefused(t *testing.T) {
	tests := []struct {
		name    string
		in      func(t *testing.T) *Input
		want    []string // "severity: flows" per incident
		summary string   // of the first
		cause   string   // a fragment of the first incident's first cause
	}{
		{
			// The lab's upstream-refused, built by hand.
			name: "nginx's connect refused, the client gets 502",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(10*s, proxiedRequest(1, proxyClient, 0), refusedConnect(2, nginxOut, proxyUpstream, 4*ms)),
					logText{"nginx-error", "error.log", nginxError(0, "error", 7, refused, "GET /api HTTP/1.1", "http://"+proxyUpstream+"/api")},
					logText{"nginx-access", "access.log", nginxAccess(0, proxyClient, 7, "GET /api HTTP/1.1", 502, proxyUpstream, "502", "0.000", "0.000")})
			},
			want:    []string{"medium: " + sortedJoin([]string{proxyClient + ">" + proxyNginx, nginxOut + ">" + proxyUpstream})},
			summary: "nginx's connect() to upstream 10.0.0.11:8080 was refused: its SYN was answered by RST (111: Connection refused); client 10.0.0.5:41000 got 502 for GET /api.",
			cause:   "Nothing listened on upstream 10.0.0.11:8080",
		},
		{
			// No capture: the flows come from the logs.
			name: "six refusals in the logs alone",
			in: func(t *testing.T) *Input {
				var errs, access strings.Builder
				for i := range 6 {
					client := fmt.Sprintf("10.0.0.%d:4100%d", 5+i%2, i)
					errs.WriteString(nginxError(time.Duration(i)*s, "error", 10+i, refused, "GET /api HTTP/1.1", "http://"+proxyUpstream+"/api"))
					access.WriteString(nginxAccess(time.Duration(i)*s, client, 10+i, "GET /api HTTP/1.1", 502, proxyUpstream, "502", "0.000", "0.000"))
				}
				return withLogs(t, input(10*s), logText{"nginx-error", "error.log", errs.String()}, logText{"nginx-access", "access.log", access.String()})
			},
			want: []string{"high: " + strings.Join([]string{
				"10.0.0.5:41000>" + proxyUpstream, "10.0.0.5:41002>" + proxyUpstream, "10.0.0.5:41004>" + proxyUpstream,
				"10.0.0.6:41001>" + proxyUpstream, "10.0.0.6:41003>" + proxyUpstream, "10.0.0.6:41005>" + proxyUpstream}, " ")},
			summary: "nginx's connects to upstream 10.0.0.11:8080 were refused 6 times over 5.0 s; clients on 2 hosts got 502 for 6 requests.",
			cause:   "Nothing listened on upstream 10.0.0.11:8080",
		},
		{
			name: "nginx retried the next server and the client got its answer",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(10*s, proxiedRequest(1, proxyClient, 0), refusedConnect(2, nginxOut, proxyUpstream, 4*ms)),
					logText{"nginx-error", "error.log", nginxError(0, "error", 7, refused, "GET /api HTTP/1.1", "http://"+proxyUpstream+"/api")},
					logText{"nginx-access", "access.log", nginxAccess(0, proxyClient, 7, "GET /api HTTP/1.1", 200, proxyUpstream+", 10.0.0.12:8080", "502, 200", "0.001", "0.000, 0.001")})
			},
			want:    []string{"low: " + sortedJoin([]string{proxyClient + ">" + proxyNginx, nginxOut + ">" + proxyUpstream})},
			summary: "nginx's connect() to upstream 10.0.0.11:8080 was refused: its SYN was answered by RST (111: Connection refused); client 10.0.0.5:41000 got 200 for GET /api after nginx retried another upstream server.",
		},
		{
			name: "the upstream accepted other connections meanwhile",
			in: func(t *testing.T) *Input {
				ok := conv(3, "10.0.0.10:36002", proxyUpstream).handshake(2 * ms).done()
				return withLogs(t, input(10*s, proxiedRequest(1, proxyClient, 0), refusedConnect(2, nginxOut, proxyUpstream, 4*ms), ok),
					logText{"nginx-error", "error.log", nginxError(0, "error", 7, refused, "GET /api HTTP/1.1", "http://"+proxyUpstream+"/api")})
			},
			want:  []string{"medium: " + sortedJoin([]string{proxyClient + ">" + proxyNginx, nginxOut + ">" + proxyUpstream})},
			cause: "A listener on 10.0.0.11:8080 exists but refused some connections: it completed 1 other handshake",
		},
		{
			// A blocking connect() in a traced client, no nginx.
			name: "a traced process's connect refused",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(10*s),
					logText{"strace", "app.strace", "4242  12:00:01.000000 connect(5, {sa_family=AF_INET, sin_port=htons(5432), sin_addr=inet_addr(\"10.0.0.20\")}, 16) = -1 ECONNREFUSED (Connection refused) <0.000030>\n"})
			},
			want:    []string{"medium: process 4242>10.0.0.20:5432"},
			summary: "Process 4242's connect() to upstream 10.0.0.20:5432 was refused (111: Connection refused).",
		},
		{
			name: "two episodes and another upstream",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(400*s),
					logText{"nginx-error", "error.log", nginxError(0, "error", 1, refused, "GET /a HTTP/1.1", "http://"+proxyUpstream+"/a") +
						nginxError(1*s, "error", 2, refused, "GET /b HTTP/1.1", "http://10.0.0.12:8080/b") +
						nginxError(300*s, "error", 3, refused, "GET /a HTTP/1.1", "http://"+proxyUpstream+"/a")})
			},
			want: []string{"medium: 10.0.0.5>" + proxyUpstream, "medium: 10.0.0.5>10.0.0.12:8080", "medium: 10.0.0.5>" + proxyUpstream},
		},
		{
			name: "healthy: an unreachable upstream is not a refusal",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(10*s),
					logText{"nginx-error", "error.log", nginxError(0, "error", 7, "connect() failed (113: No route to host) while connecting to upstream", "GET /api HTTP/1.1", "http://"+proxyUpstream+"/api")})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "upstream-connect-refused", tt.in(t))
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
			if tt.summary != "" && got[0].Summary != tt.summary {
				t.Errorf("summary\n got %q\nwant %q", got[0].Summary, tt.summary)
			}
			if tt.cause != "" && !strings.HasPrefix(got[0].Causes[0].Text, tt.cause) {
				t.Errorf("first cause %q, want it to start %q", got[0].Causes[0].Text, tt.cause)
			}
		})
	}
}
