package sockstat

import (
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"wiremortem/decoders/logline"
)

// The files in testdata/ are real outputs of ss, netstat and nstat over the
// sockets testdata/sockslab.py makes in a private namespace (see
// testdata/regen.sh). Ephemeral ports change with every run; the tests
// rely on the servers' ports and on states.

func scanLab(t *testing.T, name string) scanned {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := scanWith(t, NewScanner(f, logline.Options{Source: name}))
	if len(got.unparsed) != 0 {
		t.Errorf("%s: unparsed lines: %v", name, got.unparsed)
	}
	return got
}

func TestLabEveryLineParsed(t *testing.T) {
	want := map[string]int{ // snapshots per file
		"ss_tanoi_watch.txt":        3,
		"ss_tanoiepm.txt":           1,
		"ss_state_established.txt":  1,
		"netstat_antp_watch.txt":    2,
		"netstat_anto.txt":          1,
		"netstat_antop.txt":         1,
		"netstat_s_watch.txt":       2,
		"netstat_s_grep_listen.txt": 3,
		"nstat_az_watch.txt":        2,
	}
	for name, snapshots := range want {
		if got := scanLab(t, name); len(got.snapshots) != snapshots {
			t.Errorf("%s: %d snapshots, want %d", name, len(got.snapshots), snapshots)
		}
	}
}

func byServerPort(socks []Socket, port uint16, state TCPState) []Socket {
	var out []Socket
	for _, s := range socks {
		if s.Local.Port() == port && s.State == state {
			out = append(out, s)
		}
	}
	return out
}

func TestLabSSWatch(t *testing.T) {
	got := scanLab(t, "ss_tanoi_watch.txt")
	zones := []bool{true, true, true}
	for i, snap := range got.snapshots {
		if snap.Time.IsZero() || snap.TimeHasZone != zones[i] || (i > 0 && !snap.Time.After(got.snapshots[i-1].Time)) {
			t.Errorf("snapshot %d: time %v (zone %v)", i+1, snap.Time, snap.TimeHasZone)
		}
		// Seed 003's pile-up: the server never closes.
		if cw := byServerPort(snap.Sockets, 9001, StateCloseWait); len(cw) != 5 || cw[0].RecvQ != 1 || cw[0].Info == nil || cw[0].Info.BytesReceived != 1 {
			t.Errorf("snapshot %d: CLOSE_WAIT on :9001 %+v", i+1, cw)
		}
		// Seed 002's full accept queue: backlog 1, two waiting.
		if l := byServerPort(snap.Sockets, 9003, StateListen); len(l) != 1 || l[0].RecvQ != 2 || l[0].SendQ != 1 {
			t.Errorf("snapshot %d: listener :9003 %+v", i+1, l)
		}
		// Seed 001's zero window: the sender probes, the receiver's Recv-Q is full.
		flood := byServerPort(snap.Sockets, 9002, StateEstablished)
		if len(flood) != 1 || flood[0].SendQ < 1<<20 || flood[0].Timer == nil || flood[0].Timer.Kind != TimerZeroWindowProbe ||
			flood[0].Info == nil || flood[0].Info.NotSent != flood[0].SendQ || flood[0].Info.Backoff == 0 {
			t.Errorf("snapshot %d: flooding sender %+v", i+1, flood)
			continue
		}
		var reader *Socket
		for j := range snap.Sockets {
			if snap.Sockets[j].Local == flood[0].Peer {
				reader = &snap.Sockets[j]
			}
		}
		if reader == nil || reader.RecvQ != 4096 || reader.Peer != flood[0].Local {
			t.Errorf("snapshot %d: slow reader %+v", i+1, reader)
		}
		var synSent, timeWait, keepalive int
		for _, s := range snap.Sockets {
			switch {
			case s.State == StateSynSent && s.Timer != nil && s.Timer.Kind == TimerRetransmit && s.Peer.Port() == 9003:
				synSent++
			case s.State == StateTimeWait && s.Local.Port() == 9004 && s.Timer != nil && s.Timer.Kind == TimerTimeWait:
				timeWait++
			case s.Timer != nil && s.Timer.Kind == TimerKeepalive:
				keepalive++
			}
		}
		if synSent != 4 || timeWait != 2 || keepalive != 2 {
			t.Errorf("snapshot %d: %d SYN_SENT, %d TIME_WAIT, %d keepalive", i+1, synSent, timeWait, keepalive)
		}
	}
}

// socketKey names a socket by state and addresses, unmapped, so ss's
// [::ffff:127.0.0.1] and netstat's 127.0.0.1 on a tcp6 line compare equal.
func socketKey(s Socket) string {
	unmap := func(a netip.AddrPort) string { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String() }
	return s.State.String() + " " + unmap(s.Local) + " " + unmap(s.Peer)
}

func TestLabSSAndNetstatAgree(t *testing.T) {
	ss := scanLab(t, "ss_tanoi_watch.txt").snapshots[2]
	netstat := scanLab(t, "netstat_antp_watch.txt").snapshots[0]
	var a, b []string
	for _, s := range ss.Sockets {
		a = append(a, socketKey(s))
	}
	for _, s := range netstat.Sockets {
		b = append(b, socketKey(s))
	}
	sort.Strings(a)
	sort.Strings(b)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("ss and netstat disagree:\nss:\n%s\nnetstat:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	// The tools read the listener's queues differently: ss shows the limit
	// as Send-Q, netstat 0.
	for _, s := range netstat.Sockets {
		if s.Local.Port() == 9003 && s.State == StateListen && (s.RecvQ != 2 || s.SendQ != 0) {
			t.Errorf("netstat listener %+v", s)
		}
	}
}

func TestLabProcessesAndTimers(t *testing.T) {
	epm := scanLab(t, "ss_tanoiepm.txt").snapshots[0]
	for _, s := range byServerPort(epm.Sockets, 9001, StateListen) {
		if len(s.Processes) != 1 || s.Processes[0].Name != "python3" || s.Processes[0].PID == 0 || s.Processes[0].FD < 0 ||
			s.Inode == 0 || !strings.Contains(s.Extra, "sk:") || s.Info == nil || !strings.HasPrefix(s.Info.Raw, "skmem:(") || s.Info.CWnd != 10 {
			t.Errorf("ss -e -p -m listener %+v %+v", s, s.Info)
		}
	}
	antop := scanLab(t, "netstat_antop.txt").snapshots[0]
	flood := byServerPort(antop.Sockets, 9002, StateEstablished)
	if len(flood) != 1 || flood[0].Timer == nil || flood[0].Timer.Name != "probe" || flood[0].Timer.Kind != TimerZeroWindowProbe ||
		len(flood[0].Processes) != 1 || flood[0].Processes[0].Name != "python3" || flood[0].Processes[0].FD != -1 {
		t.Errorf("netstat -o zero-window sender %+v", flood)
	}
	established := scanLab(t, "ss_state_established.txt").snapshots[0]
	if len(established.Sockets) != 10 || established.Sockets[0].State != StateUnknown {
		t.Errorf("ss state established: %d sockets, first %+v", len(established.Sockets), established.Sockets[0])
	}
}

func TestLabCounters(t *testing.T) {
	for _, name := range []string{"netstat_s_watch.txt", "nstat_az_watch.txt"} {
		snaps := scanLab(t, name).snapshots
		if len(snaps) != 2 {
			t.Fatalf("%s: %d snapshots", name, len(snaps))
		}
		var overflow *CounterDelta
		for _, d := range CounterDeltas(snaps[0], snaps[1]) {
			if d.Name == CounterListenOverflows {
				overflow = &d
			}
		}
		if overflow == nil || overflow.Before == 0 || overflow.Delta < 0 || overflow.Interval < time.Second || overflow.Interval > 5*time.Second {
			t.Errorf("%s: ListenOverflows %+v", name, overflow)
		}
		if _, ok := snaps[1].Counter(CounterListenDrops); !ok {
			t.Errorf("%s: no %s", name, CounterListenDrops)
		}
	}
	// netstat -s names its counters in prose; every one it names after
	// nstat must be a name nstat prints, but for the gauges nstat leaves
	// out (it reports counters only).
	nstatNames := map[string]bool{"IpForwarding": true, "TcpCurrEstab": true}
	for _, c := range scanLab(t, "nstat_az_watch.txt").snapshots[0].Counters {
		nstatNames[c.Name] = true
	}
	for _, c := range scanLab(t, "netstat_s_watch.txt").snapshots[0].Counters {
		if !strings.Contains(c.Name, " ") && !nstatNames[c.Name] {
			t.Errorf("netstat -s counter %q is not an nstat name", c.Name)
		}
	}
	grep := scanLab(t, "netstat_s_grep_listen.txt").snapshots
	for _, s := range grep {
		if len(s.Counters) != 2 || s.Counters[0].Name != CounterListenOverflows || s.Counters[1].Name != CounterListenDrops {
			t.Errorf("grep listen snapshot %+v", s)
		}
	}
}
