package sockstat

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/decoders/logline"
)

type scanned struct {
	snapshots []*Snapshot
	unparsed  []logline.Unparsed
	tally     logline.Tally
}

func scanText(t *testing.T, input string, opts logline.Options) scanned {
	t.Helper()
	return scanWith(t, NewScanner(strings.NewReader(input), opts))
}

func scanWith(t *testing.T, s *Scanner) scanned {
	t.Helper()
	var out scanned
	for s.Scan() {
		if snap := s.Snapshot(); snap != nil {
			out.snapshots = append(out.snapshots, snap)
		} else {
			out.unparsed = append(out.unparsed, *s.Unparsed())
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	out.tally = s.Tally()
	if !out.tally.Balanced() || out.tally.Records != int64(len(out.snapshots)) || out.tally.Unparsed() != int64(len(out.unparsed)) {
		t.Errorf("tally does not account for every line: %+v", out.tally)
	}
	return out
}

// Seed 001: netstat on the nginx host, as pasted with its shell prompt.
func TestScannerSeed001Netstat(t *testing.T) {
	input := `[apprun@newvhost02 ~]$ netstat -anop|grep 443
tcp        0      0 0.0.0.0:443             0.0.0.0:*               LISTEN      13307/nginx: worker  off (0.00/0/0)
tcp        0 108528 172.28.72.117:443       172.28.72.119:63132     ESTABLISHED 13308/nginx: worker  probe (0.16/0/0)
`
	got := scanText(t, input, logline.Options{Source: "seed001.txt"})
	if len(got.snapshots) != 1 || len(got.snapshots[0].Sockets) != 2 {
		t.Fatalf("snapshots %+v", got.snapshots)
	}
	if len(got.unparsed) != 1 || got.unparsed[0].Reason != ReasonUnknownLine || got.unparsed[0].Ref.Line != 1 {
		t.Errorf("unparsed %+v", got.unparsed)
	}
	nginx := got.snapshots[0].Sockets[1]
	if nginx.SendQ != 108528 || nginx.Timer.Kind != TimerZeroWindowProbe || nginx.Ref.Line != 3 || nginx.Ref.Source != "seed001.txt" {
		t.Errorf("nginx socket %+v", nginx)
	}
}

// Seed 002: `for i in {1..6}; do netstat -s | grep -i listen; echo; sleep 1; done`,
// pasted without the blank lines: each repeated counter starts a snapshot.
func TestScannerSeed002ListenOverflows(t *testing.T) {
	values := []int64{2436905, 2436927, 2436950, 2436985, 2436999, 2437018}
	var b strings.Builder
	for _, v := range values {
		fmt.Fprintf(&b, "%d times the listen queue of a socket overflowed\n%d SYNs to LISTEN sockets ignored\n", v, v)
	}
	got := scanText(t, b.String(), logline.Options{})
	if len(got.snapshots) != 6 || len(got.unparsed) != 0 {
		t.Fatalf("%d snapshots, unparsed %v", len(got.snapshots), got.unparsed)
	}
	var rises []int64
	for i := 1; i < len(got.snapshots); i++ {
		for _, d := range CounterDeltas(got.snapshots[i-1], got.snapshots[i]) {
			if d.Name == CounterListenOverflows {
				rises = append(rises, d.Delta)
			}
			if d.Name == CounterListenDrops && d.Delta != values[i]-values[i-1] {
				t.Errorf("ListenDrops delta %+v", d)
			}
		}
	}
	if want := []int64{22, 23, 35, 14, 19}; jsonOf(t, rises) != jsonOf(t, want) {
		t.Errorf("ListenOverflows rose by %v, want %v", rises, want)
	}
}

func TestScannerBoundaries(t *testing.T) {
	input := strings.Join([]string{
		"Sun Nov 22 10:00:00 UTC 2026", // 1: snapshot 1
		"State Recv-Q Send-Q Local Address:Port Peer Address:Port Process",
		"LISTEN 0 511 0.0.0.0:443 0.0.0.0:*",
		"LISTEN 0 511 0.0.0.0:443 0.0.0.0:*", // reuseport: two listeners, same snapshot
		"CLOSE-WAIT 1 0 10.0.0.1:443 10.0.0.2:5000",
		"State Recv-Q Send-Q Local Address:Port Peer Address:Port Process", // 6: header after sockets: snapshot 2
		"CLOSE-WAIT 1 0 10.0.0.1:443 10.0.0.2:5000",
		"CLOSE-WAIT 1 0 10.0.0.1:443 10.0.0.2:5000", // 8: the same connection again: snapshot 3
		"1795341610",       // 9: snapshot 4, empty but timed
		"1795341611",       // 10: snapshot 5
		"\t cubic rto:204", // 11: a detail line with no socket
		"ESTAB 0 0 10.0.0.1:443 10.0.0.2:5001",
		"\t cubic rto:204 cwnd:10",
		"\t skmem:(r0,rb131072)",
		"u_str ESTAB 0 0 * 1 * 2", // 15
		"#kernel",
		"TcpExtListenOverflows 5 0.0",
		"Tcp:",
		"    3 resets sent",
		"Tcp:", // 20: a section again: snapshot 6
		"    4 resets sent",
	}, "\n")
	got := scanText(t, input, logline.Options{})
	type shape struct {
		Line              int64
		Time              string
		Sockets, Counters int
	}
	var shapes []shape
	for _, s := range got.snapshots {
		tm := ""
		if !s.Time.IsZero() {
			tm = s.Time.UTC().Format(time.RFC3339)
		}
		shapes = append(shapes, shape{s.Ref.Line, tm, len(s.Sockets), len(s.Counters)})
	}
	want := []shape{
		{1, "2026-11-22T10:00:00Z", 3, 0},
		{6, "", 1, 0},
		{8, "", 1, 0},
		{9, "2026-11-22T10:00:10Z", 0, 0},
		{10, "2026-11-22T10:00:11Z", 1, 2},
		{20, "", 0, 1},
	}
	if jsonOf(t, shapes) != jsonOf(t, want) {
		t.Errorf("snapshots %s\nwant %s", jsonOf(t, shapes), jsonOf(t, want))
	}
	if len(got.unparsed) != 2 || got.unparsed[0].Reason != ReasonOrphanDetail || got.unparsed[1].Reason != ReasonNotInternetSocket {
		t.Errorf("unparsed %+v", got.unparsed)
	}
	est := got.snapshots[4].Sockets[0]
	if est.Info == nil || est.Info.Raw != "cubic rto:204 cwnd:10 skmem:(r0,rb131072)" || est.Info.CWnd != 10 || !est.Time.Equal(got.snapshots[4].Time) || !est.TimeHasZone {
		t.Errorf("socket with details %+v %+v", est, est.Info)
	}
	if c, ok := got.snapshots[4].Counter("TcpOutRsts"); !ok || c.Value != 3 || c.Tool != ToolNetstatStats || !c.Time.Equal(got.snapshots[4].Time) || c.Ref.Line != 19 {
		t.Errorf("TcpOutRsts %+v", c)
	}
}

func TestScannerCaps(t *testing.T) {
	input := "Sun Nov 22 10:00:00 UTC 2026\n" +
		"ESTAB 0 0 10.0.0.1:1 10.0.0.2:1\nESTAB 0 0 10.0.0.1:2 10.0.0.2:1\nESTAB 0 0 10.0.0.1:3 10.0.0.2:1\n" +
		"A 1\nB 2\nC 3\n" + strings.Repeat("x", 300) + "\n"
	s := NewScanner(strings.NewReader(input), logline.Options{MaxLineBytes: 200})
	s.maxSockets, s.maxCounters = 2, 2
	got := scanWith(t, s)
	if len(got.snapshots) != 1 || len(got.snapshots[0].Sockets) != 2 || len(got.snapshots[0].Counters) != 2 {
		t.Fatalf("snapshots %+v", got.snapshots)
	}
	if got.tally.UnparsedLines[ReasonOverCap] != 2 || got.tally.UnparsedLines[logline.ReasonTooLong] != 1 {
		t.Errorf("tally %+v", got.tally)
	}
}

func TestCounterDeltas(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(2 * time.Second)
	before := &Snapshot{Time: t0, Counters: []Counter{{Name: "B", Value: 5}, {Name: "A", Value: 10}, {Name: "gone", Value: 1}}}
	after := &Snapshot{Time: t1, Counters: []Counter{{Name: "A", Value: 12, Time: t1}, {Name: "B", Value: 1, Time: t1}, {Name: "new", Value: 1}}}
	got := CounterDeltas(before, after)
	want := []CounterDelta{
		{Name: "A", Before: 10, After: 12, Delta: 2, Interval: 2 * time.Second, Time: t1},
		{Name: "B", Before: 5, After: 1, Delta: -4, Interval: 2 * time.Second, Time: t1},
	}
	if jsonOf(t, got) != jsonOf(t, want) {
		t.Errorf("got %s\nwant %s", jsonOf(t, got), jsonOf(t, want))
	}
	if d := CounterDeltas(&Snapshot{Counters: before.Counters}, after); d[0].Interval != 0 {
		t.Errorf("interval without a time: %v", d[0].Interval)
	}
}

func TestParseNetstatStatsLine(t *testing.T) {
	tests := []struct {
		line, section string
		want          Counter
	}{
		{"    20 times the listen queue of a socket overflowed", "TcpExt", Counter{Tool: ToolNetstatStats, Name: CounterListenOverflows, Value: 20}},
		{"2436905 SYNs to LISTEN sockets ignored", "", Counter{Tool: ToolNetstatStats, Name: CounterListenDrops, Value: 2436905}},
		{"    TCPToZeroWindowAdv: 229", "TcpExt", Counter{Tool: ToolNetstatStats, Name: CounterToZeroWindowAdv, Value: 229}},
		{"    Quick ack mode was activated 5 times", "TcpExt", Counter{Tool: ToolNetstatStats, Name: "TcpExt: Quick ack mode was activated N times", Value: 5}},
		{"        InType3: 1", "IcmpMsg", Counter{Tool: ToolNetstatStats, Name: "IcmpMsgInType3", Value: 1}},
		{"        destination unreachable: 1", "Icmp: ICMP input histogram:", Counter{Tool: ToolNetstatStats, Name: "Icmp: ICMP input histogram:: destination unreachable: N", Value: 1}},
		{"    8 resets sent", "Tcp", Counter{Tool: ToolNetstatStats, Name: CounterOutRsts, Value: 8}},
		{"    4 connection resets received", "Tcp", Counter{Tool: ToolNetstatStats, Name: CounterEstabResets, Value: 4}},
		{"    5 segments retransmitted", "Tcp", Counter{Tool: ToolNetstatStats, Name: CounterRetransSegs, Value: 5}},
	}
	for _, tt := range tests {
		got, ok := parseNetstatStatsLine(tt.line, tt.section)
		if !ok || got != tt.want {
			t.Errorf("parseNetstatStatsLine(%q, %q) = %+v, %v; want %+v", tt.line, tt.section, got, ok, tt.want)
		}
	}
	for _, line := range []string{"    no number here", "    Name: x", "[apprun@newvhost02 ~]$ netstat -anop|grep 443", "Forwarding: 2"} {
		if c, ok := parseNetstatStatsLine(line, "Tcp"); ok {
			t.Errorf("parseNetstatStatsLine(%q) = %+v", line, c)
		}
	}
}
