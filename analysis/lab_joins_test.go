package analysis

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
	"wiremortem/internal/lab"
)

// ourConversation maps the lab's conversation ids to the analysis's: by
// endpoints, a client port of 0 (unknown to the lab) matching the one
// conversation from that address to that server.
func ourConversations(t *testing.T, res *Result, facts lab.Facts) map[string]*flows.Conversation {
	t.Helper()
	out := map[string]*flows.Conversation{}
	for _, fc := range facts.Conversations {
		want, err := netip.ParseAddrPort(fc.Client)
		if err != nil {
			t.Fatalf("facts: %v", err)
		}
		var found []*flows.Conversation
		for _, c := range res.Document.Conversations {
			if c.Server.String() == fc.Server && (c.Client == want || (want.Port() == 0 && c.Client.Addr() == want.Addr())) {
				found = append(found, c.Conversation)
			}
		}
		if len(found) == 1 {
			out[fc.ID] = found[0]
		}
	}
	return out
}

// TestLabJoins checks every join the lab knows for certain: each traced
// socket (file, pid, fd, peer) must be tied to the conversation the lab
// made, each nginx request (by its connection number) to its client
// conversation and its upstream one, and the joined records must sit on
// the capture's clock although the logs were written in another zone
// and wiremortem was told nothing about it.
func TestLabJoins(t *testing.T) {
	checked := 0
	for _, dir := range labDirs(t) {
		facts, err := lab.Load(filepath.Join(dir, "facts.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(facts.Joins.Strace) == 0 && len(facts.Joins.Nginx) == 0 {
			continue
		}
		t.Run(facts.Scenario, func(t *testing.T) {
			res := analyseScenario(t, dir, facts, Options{})
			checked += checkStraceJoins(t, res, facts, 0) + checkNginxJoins(t, res, facts)
		})
	}
	if checked < 20 {
		t.Errorf("only %d joins checked", checked)
	}
}

func checkStraceJoins(t *testing.T, res *Result, facts lab.Facts, skew time.Duration) int {
	t.Helper()
	ours := ourConversations(t, res, facts)
	n := 0
	for _, j := range facts.Joins.Strace {
		c := ours[j.Conversation]
		if c == nil {
			t.Errorf("strace join %s fd %d: conversation %s not found in the capture", j.File, j.FD, j.Conversation)
			continue
		}
		found := false
		for _, s := range res.Joined.Straces {
			l := s.Life
			if filepath.Base(s.Source) != j.File || l.FD != j.FD || l.Peer.String() != j.Peer || l.Local.String() != j.Local {
				continue
			}
			found = true
			if s.Conversation != c.ID {
				t.Errorf("%s fd %d (peer %s): joined to conversation %d, want %d (%s)", j.File, j.FD, j.Peer, s.Conversation, c.ID, j.Conversation)
			}
			// On the capture's clock: the socket was opened (accept or
			// connect) within 50 ms of the conversation's first packet.
			if d := l.Opened.Time.Sub(c.Start); math.Abs(float64(d)) > float64(50*time.Millisecond) {
				t.Errorf("%s fd %d: opened %v from the conversation's first packet (skew %v planted)", j.File, j.FD, d, skew)
			}
		}
		if !found {
			t.Errorf("strace join %s pid %d fd %d peer %s: no such socket decoded", j.File, j.PID, j.FD, j.Peer)
		}
		n++
	}
	return n
}

func checkNginxJoins(t *testing.T, res *Result, facts lab.Facts) int {
	t.Helper()
	ours := ourConversations(t, res, facts)
	n := 0
	for _, j := range facts.Joins.Nginx {
		c := ours[j.Conversation]
		if c == nil {
			t.Errorf("nginx join *%d: conversation %s not found in the capture", j.Connection, j.Conversation)
			continue
		}
		access := 0
		for _, a := range res.Joined.Access {
			if a.Record.Connection != 0 && int64(a.Record.Connection) != j.Connection || a.Record.Request != j.Request {
				continue
			}
			if a.Record.Connection == 0 && fmt.Sprintf("%s:%d", a.Record.RemoteAddr, a.Record.RemotePort) != j.Client {
				continue
			}
			access++
			if a.Conversation != c.ID {
				t.Errorf("access line %s (*%d %s): joined to conversation %d, want %d (%s)", a.Record.Ref, j.Connection, j.Request, a.Conversation, c.ID, j.Conversation)
			}
			// $time_local is when the request ended, to the second; a
			// conversation open when the capture stopped ended later.
			late := a.Record.Time.After(c.End.Add(time.Second)) && c.EndReason != "capture-end"
			if a.Record.Time.Before(c.Start.Truncate(time.Second)) || late {
				t.Errorf("access line %s at %v, outside its conversation %v..%v", a.Record.Ref, a.Record.Time, c.Start, c.End)
			}
			if up := ours[j.UpstreamConversation]; j.UpstreamConversation != "" && up != nil && a.Upstream != up.ID {
				t.Errorf("access line %s: upstream conversation %d, want %d (%s)", a.Record.Ref, a.Upstream, up.ID, j.UpstreamConversation)
			}
		}
		if access != 1 {
			t.Errorf("nginx join *%d %s: %d access lines matched, want 1", j.Connection, j.Request, access)
		}
		for _, e := range res.Joined.Errors {
			if int64(e.Record.Connection) == j.Connection && e.Conversation != c.ID {
				t.Errorf("error line %s (*%d): joined to conversation %d, want %d", e.Record.Ref, j.Connection, e.Conversation, c.ID)
			}
		}
		n++
	}
	return n
}

// straceTime is strace -t/-tt's time of day after the pid.
var straceTime = regexp.MustCompile(`(?m)^(\d+\s+)(\d\d):(\d\d):(\d\d)\.(\d{6})`)

// TestLabSkew plants a clock error: the server's trace is rewritten 3.2 s
// ahead (its host's clock ran fast) on top of its zone being unknown.
// wiremortem must estimate the whole offset from the trace's accepts and
// the capture's handshakes, join every socket as before and find the
// same incidents.
func TestLabSkew(t *testing.T) {
	const skew = 3200 * time.Millisecond
	src := filepath.Join(labRoot(t), "ws-no-101")
	facts, err := lab.Load(filepath.Join(src, "facts.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range facts.Files {
		data, err := os.ReadFile(filepath.Join(src, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if f.Kind == lab.KindStrace {
			data = straceTime.ReplaceAllFunc(data, func(m []byte) []byte {
				g := straceTime.FindSubmatch(m)
				var tod time.Duration
				for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
					v, _ := strconv.Atoi(string(g[2+i]))
					tod += time.Duration(v) * unit
				}
				us, _ := strconv.Atoi(string(g[5]))
				tod += time.Duration(us)*time.Microsecond + skew
				if tod >= 24*time.Hour {
					t.Fatal("the planted skew crosses midnight; pick another scenario")
				}
				return fmt.Appendf(nil, "%s%02d:%02d:%02d.%06d", g[1], int(tod/time.Hour), int(tod/time.Minute%60), int(tod/time.Second%60), int(tod%time.Second/time.Microsecond))
			})
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := analyseScenario(t, dir, facts, Options{})
	var applied time.Duration
	for _, in := range res.Document.Inputs {
		if in.Kind == KindStrace && in.Clock != nil {
			applied = in.Clock.Applied
			if note := in.Clock.EstimateNote; !strings.Contains(note, "UTC+08:00") || !strings.Contains(note, "3.2s ahead") {
				t.Errorf("the estimate's note does not name the zone and the clock error: %q", note)
			}
			t.Logf("strace clock: zone %s (%s), applied %v, note %q", in.Clock.Zone, in.Clock.ZoneSource, in.Clock.Applied, in.Clock.EstimateNote)
		}
	}
	zone, err := time.LoadLocation(facts.Clock.TimeZone)
	if err != nil {
		t.Fatal(err)
	}
	_, off := facts.Clock.Start.In(zone).Zone()
	want := -(time.Duration(off)*time.Second + skew)
	if d := applied - want; d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Errorf("applied offset %v, want %v within 5 ms", applied, want)
	}
	checkStraceJoins(t, res, facts, skew)

	// --tz naming a wrong zone: the note names the zone the trace was
	// written in and the one --tz said, not "pass --tz".
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	_, berlinOff := facts.Clock.Start.In(berlin).Zone()
	written := fmt.Sprintf("UTC%+03d:%02d", off/3600, off%3600/60)
	withTZ := analyseScenario(t, dir, facts, Options{Clock: ClockOptions{Zone: berlin}})
	for _, in := range withTZ.Document.Inputs {
		if in.Kind != KindStrace || in.Clock == nil {
			continue
		}
		note := in.Clock.EstimateNote
		if !strings.Contains(note, "in a "+written+" zone, not in Europe/Berlin") || strings.Contains(note, "pass --tz") || !strings.Contains(note, "3.2s ahead") {
			t.Errorf("with --tz Europe/Berlin, the note %q does not say the trace was written in %s", note, written)
		}
		if d := in.Clock.Applied - (want + time.Duration(berlinOff)*time.Second); d < -5*time.Millisecond || d > 5*time.Millisecond {
			t.Errorf("with --tz Europe/Berlin, applied offset %v, want %v within 5 ms", in.Clock.Applied, want+time.Duration(berlinOff)*time.Second)
		}
		if text := ClockText(in.Clock); !strings.Contains(text, "zone Europe/Berlin, given") || !strings.Contains(text, "times shifted by") {
			t.Errorf("the clock's text for the report: %q", text)
		}
	}
	var rules []string
	for _, inc := range res.Document.Incidents {
		rules = append(rules, inc.Rule)
	}
	if got := strings.Join(rules, " "); got != "ws-upgrade-no-101 server-read-no-write" && got != "server-read-no-write ws-upgrade-no-101" {
		t.Errorf("incidents with a skewed trace: %s", got)
	}
}

func labRoot(t *testing.T) string {
	return filepath.Dir(labDirs(t)[0])
}

// TestLabTimelineLogs: the timeline carries the logs' telling records on
// the capture's clock (nginx's error line during the zero window, the
// traced reads of the unanswered upgrades), and leaves off a log whose
// clock could not be settled (the listener's trace, which nothing pairs
// with a packet).
func TestLabTimelineLogs(t *testing.T) {
	root := labRoot(t)
	tests := []struct {
		scenario string
		kind     EventKind
		lane     string
		want     bool
	}{
		{"zero-window-nginx", EventLogError, "error.log", true},
		{"ws-no-101", EventStrace, "server.strace", true},
		{"close-wait", EventSnapshot, "ss.txt", true},
		{"syn-backlog", EventStrace, "listener.strace", false},
	}
	for _, tt := range tests {
		facts, err := lab.Load(filepath.Join(root, tt.scenario, "facts.json"))
		if err != nil {
			t.Fatal(err)
		}
		res := analyseScenario(t, filepath.Join(root, tt.scenario), facts, Options{})
		found := false
		for _, ev := range res.Document.Timeline {
			if ev.Kind != tt.kind || filepath.Base(ev.Lane) != tt.lane {
				continue
			}
			found = true
			if ev.Time.Before(facts.Clock.Start.Add(-time.Second)) || ev.Time.After(facts.Clock.End.Add(time.Second)) {
				t.Errorf("%s: %s event %q at %v, outside the scenario's %v..%v", tt.scenario, ev.Kind, ev.What, ev.Time, facts.Clock.Start, facts.Clock.End)
			}
		}
		if found != tt.want {
			t.Errorf("%s: %s events from %s on the timeline: %v, want %v", tt.scenario, tt.kind, tt.lane, found, tt.want)
		}
	}
}

// TestNginxConfGivesTheLogFormat: in every lab scenario with an nginx
// (its access log in the lab's own log_format), the nginx.conf nginx ran
// with, given among the inputs instead of --nginx-log-format, reads every
// access-log line, and the incidents, the timeline and the log clocks are
// those of a run given the format.
func TestNginxConfGivesTheLogFormat(t *testing.T) {
	n := 0
	for _, dir := range labDirs(t) {
		conf := filepath.Join(dir, "nginx.conf")
		if _, err := os.Stat(conf); err != nil {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			facts, err := lab.Load(filepath.Join(dir, "facts.json"))
			if err != nil {
				t.Fatal(err)
			}
			if kind, err := Detect(conf); kind != KindNginxConf {
				t.Fatalf("nginx.conf detected as %q (%v)", kind, err)
			}
			given := analyseScenario(t, dir, facts, Options{})
			inputs, _ := scenarioInputs(dir, facts)
			res, err := Run(context.Background(), append(inputs, Input{Path: conf}), Options{ReportConversations: 10000})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			access := 0
			var clocks []*ClockAssumption
			for _, in := range res.Document.Inputs {
				switch in.Kind {
				case KindNginxAccess:
					access++
					if in.Unparsed != 0 || in.Records == 0 || in.Format != "lab (nginx.conf)" {
						t.Errorf("%s: %d of %d lines not understood, read as %q", in.Path, in.Unparsed, in.Records, in.Format)
					}
				case KindNginxConf:
					if in.Records != 1 || in.SHA256 == "" {
						t.Errorf("%s: %d log_format directives, sha256 %q", in.Path, in.Records, in.SHA256)
					}
				}
				if in.Kind != KindNginxConf && in.Clock != nil {
					clocks = append(clocks, in.Clock)
				}
			}
			if access == 0 {
				t.Fatal("no access log among the inputs")
			}
			var givenClocks []*ClockAssumption
			for _, in := range given.Document.Inputs {
				if in.Clock != nil {
					givenClocks = append(givenClocks, in.Clock)
				}
			}
			if !reflect.DeepEqual(res.Document.Incidents, given.Document.Incidents) || !reflect.DeepEqual(res.Document.Timeline, given.Document.Timeline) || !reflect.DeepEqual(clocks, givenClocks) {
				t.Errorf("with nginx.conf: %d incidents, %d timeline events; with --nginx-log-format: %d, %d (or the clocks differ)", len(res.Document.Incidents), len(res.Document.Timeline), len(given.Document.Incidents), len(given.Document.Timeline))
			}
		})
	}
	if n < 5 {
		t.Errorf("only %d lab scenarios with an nginx.conf", n)
	}
}

// TestDetectNginxConf: an nginx.conf as distributions ship it (no
// log_format; its "name value;" lines once passed for nstat counters) is
// an nginx configuration.
func TestDetectNginxConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nginx.conf")
	conf := "user www-data;\nworker_processes auto;\npid /run/nginx.pid;\n\nevents {\n\tworker_connections 768;\n}\n\nhttp {\n\tsendfile on;\n\ttcp_nopush on;\n\ttypes_hash_max_size 2048;\n\tkeepalive_timeout 65;\n\tgzip on;\n\tinclude /etc/nginx/sites-enabled/*;\n}\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if kind, err := Detect(path); kind != KindNginxConf {
		t.Errorf("detected as %q (%v), want %s", kind, err, KindNginxConf)
	}
}
