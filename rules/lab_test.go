package rules_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"wiremortem/analysis"
	"wiremortem/internal/lab"
	"wiremortem/internal/testenv"
	"wiremortem/rules"
)

// TestLabLogs runs the whole analysis over the lab's scenarios that come
// with logs (real nginx, strace, ss and nstat next to real captures), as
// TestLabIncidents in analysis does, and checks what the rules say from
// those logs: the lines they cite, the numbers, the causes. The healthy
// twins must stay quiet.
func TestLabLogs(t *testing.T) {
	tests := []struct {
		scenario, rule string
		flows          int
		summary        string
		// evidence lists "file:line" or "file #packet" references that
		// must be cited; causes fragments some cause must hold.
		evidence, causes []string
	}{
		{
			scenario: "upstream-refused", rule: "upstream-connect-refused", flows: 2,
			summary:  "nginx's connect() to upstream 127.0.31.11:9 was refused: its SYN was answered by RST (111: Connection refused); client 127.0.31.5:38851 got 502 for GET /api/status.",
			evidence: []string{"error.log:7", "access.log:1", "capture.pcap #6", "capture.pcap #7"},
			causes:   []string{"Nothing listened on upstream 127.0.31.11:9"},
		},
		{
			scenario: "upstream-timeout", rule: "upstream-timeout", flows: 2,
			summary:  "nginx timed out waiting for the response header from upstream 127.0.32.11:9000 after 2.0 s (proxy_read_timeout, about 2.0 s here); client 127.0.32.5:33679 got 504 for GET /slow.",
			evidence: []string{"error.log:7", "access.log:1", "capture.pcap #9", "capture.pcap #11", "capture.pcap #12"},
			causes:   []string{"sent no response header within proxy_read_timeout (2.0 s)", "it answered just after nginx gave up"},
		},
		{
			// proxy_read_timeout 3s closes an idle WebSocket through nginx:
			// one incident for both of nginx's connections; upstream-timeout
			// defers to it.
			scenario: "idle-timeout", rule: "idle-timeout-teardown", flows: 2,
			summary:  "nginx closed the idle WebSocket of client 127.0.36.5:40757 and its own connection to upstream 127.0.36.11:9000 after 3.0 s of silence: proxy_read_timeout fired (upstream timed out (110: Connection timed out) while proxying upgraded connection).",
			evidence: []string{"error.log:7", "capture.pcap #21", "capture.pcap #24"},
			causes:   []string{"nginx's proxy_read_timeout is about 3.0 s"},
		},
		{
			// Seed 003: five CLOSE_WAITs younger than min_age when the
			// capture stopped, proven by the trace and the ss loop.
			scenario: "close-wait", rule: "close-wait", flows: 5,
			summary:  "Server 127.0.7.9:6379 left 5 connections in CLOSE_WAIT after their peers closed, ages 2.8 s to 4.0 s (median 3.4 s); 5 still open when the capture ended.",
			evidence: []string{"server.strace:78", "server.strace:95", "ss.txt:183", "ss.txt:411"},
			causes:   []string{"the trace shows it on 5 sockets: read() returned 0 and no close() followed"},
		},
		{
			// Seed 001 behind nginx.
			scenario: "zero-window-nginx", rule: "zero-window-rst", flows: 1,
			summary:  "Client 127.0.33.5:51555 stopped reading: it advertised a zero window to 127.0.33.10:8080 for 3.0 s (3 probes), then the server reset the connection.",
			evidence: []string{"error.log:7", "ss.txt:25", "ss.txt:23", "ss.txt:13"},
			causes: []string{"ss showed 5,422 bytes unread at the client, 25,788 bytes waiting to be sent at the server, nginx in turn left 32,912 bytes unread from upstream 127.0.33.11:9000",
				"nginx's send_timeout expired, as its error log says: it could not write to the client for 3.0 s"},
		},
		{
			// Seed 002.
			scenario: "syn-backlog", rule: "syn-unanswered", flows: 38,
			summary:  "127.0.3.9:9869 left 38 of 40 connection attempts from 1 client host unanswered in 895 µs (peak 40 SYNs per 100 ms).",
			evidence: []string{"listener.strace:19", "ss-listen.txt:2", "nstat-before.txt:190", "nstat-after.txt:190", "nstat-after.txt:191"},
			causes: []string{"min(backlog 1, net.core.somaxconn) = 1", "the trace shows no accept() on that socket at all",
				"ss showed 2 connections waiting in a queue whose limit is 1", "TcpExtListenOverflows by 38 and TcpExtListenDrops by 38 (the capture holds 38 SYNs left unanswered)"},
		},
		{scenario: "close-wait-twin"},
		{scenario: "idle-timeout-twin"},
		{scenario: "zero-window-nginx-twin"},
		{scenario: "nginx-proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			got := labIncidents(t, tt.scenario)
			var mine []rules.Incident
			for _, inc := range got {
				if inc.Rule == tt.rule {
					mine = append(mine, inc)
				} else if logRules[inc.Rule] {
					t.Errorf("%s fired: %s", inc.Rule, inc.Summary)
				}
			}
			if tt.rule == "" {
				return
			}
			if len(mine) != 1 {
				t.Fatalf("%d %s incidents, want 1", len(mine), tt.rule)
			}
			inc := mine[0]
			rules.CheckIncident(t, inc)
			if len(inc.Flows) != tt.flows {
				t.Errorf("%d flows, want %d", len(inc.Flows), tt.flows)
			}
			if inc.Summary != tt.summary {
				t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
			}
			cited := map[string]bool{}
			for _, e := range inc.Evidence {
				e.Source = filepath.Base(e.Source)
				cited[e.Ref.String()] = true
			}
			for _, ref := range tt.evidence {
				if !cited[ref] {
					t.Errorf("%s not cited; evidence: %v", ref, inc.Evidence)
				}
			}
			var causes []string
			for _, c := range inc.Causes {
				causes = append(causes, c.Text)
			}
			all := strings.Join(causes, "\n")
			for _, want := range tt.causes {
				if !strings.Contains(all, want) {
					t.Errorf("no cause says %q:\n%s", want, all)
				}
			}
		})
	}
}

// logRules are the rules this test watches on the healthy twins.
var logRules = map[string]bool{
	"upstream-connect-refused": true, "upstream-timeout": true, "idle-timeout-teardown": true,
	"close-wait": true, "zero-window-rst": true, "syn-unanswered": true,
}

// labIncidents analyses every capture and log of a lab scenario, kinds
// sniffed and clocks estimated, with the nginx log_format its nginx.conf
// names.
func labIncidents(t *testing.T, scenario string) []rules.Incident {
	t.Helper()
	dir := filepath.Join(testenv.RepoRoot(), "testdata", "captures", scenario)
	facts, err := lab.Load(filepath.Join(dir, "facts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var inputs []analysis.Input
	var opts analysis.Options
	for _, f := range facts.Files {
		switch f.Kind {
		case lab.KindNginxConf, lab.KindClientLog:
			continue
		}
		inputs = append(inputs, analysis.Input{Path: filepath.Join(dir, f.Name)})
		if f.LogFormat != "" {
			opts.NginxLogFormat = f.LogFormat
		}
	}
	res, err := analysis.Run(context.Background(), inputs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	return res.Document.Incidents
}
