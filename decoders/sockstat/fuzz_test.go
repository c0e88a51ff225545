package sockstat

import (
	"bytes"
	"testing"
	"time"

	"wiremortem/decoders/logline"
)

// checkScan runs the scanner over data: it must not panic, must account
// for every line, and every socket must sit in a snapshot with its line.
func checkScan(t *testing.T, data []byte) {
	s := NewScanner(bytes.NewReader(data), logline.Options{Source: "fuzz", MaxLineBytes: 512})
	snapshots := 0
	for s.Scan() {
		if snap := s.Snapshot(); snap != nil {
			snapshots++
			for _, sock := range snap.Sockets {
				if sock.Ref.Line < snap.Ref.Line {
					t.Fatalf("socket at line %d before its snapshot at %d", sock.Ref.Line, snap.Ref.Line)
				}
			}
		}
	}
	if tally := s.Tally(); !tally.Balanced() || tally.Records != int64(snapshots) {
		t.Fatalf("tally %+v, %d snapshots", tally, snapshots)
	}
}

// FuzzSS feeds ss output, one line to the line parser and all of it to
// the scanner.
func FuzzSS(f *testing.F) {
	f.Add([]byte("State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\nESTAB 0 2803712 127.0.0.1:9002 127.0.0.1:39324 timer:(persist,1.392ms,0)\n\t ts sack rto:208 backoff:3 rtt:5.258/10.5 retrans:1/5\n"))
	f.Add([]byte(`LISTEN 0 16 127.0.0.1:9001 0.0.0.0:* users:(("python3",pid=18835,fd=3),("a b",pid=1,fd=2)) ino:390517 sk:1001 uid:33 <->`))
	f.Add([]byte("udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:*\ntcp ESTAB 0 0 [fe80::1%eth0]:22 [fe80::2]%eth0:50000\n0 0 [::ffff:127.0.0.1]:9006 *:*"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if sock, ok, problem := parseSSLine(string(line)); ok && problem == "" && sock.Tool != ToolSS {
				t.Fatalf("tool %q", sock.Tool)
			}
		}
		checkScan(t, data)
	})
}

// FuzzNetstat feeds netstat -ant[po] output.
func FuzzNetstat(f *testing.F) {
	f.Add([]byte("Active Internet connections (servers and established)\nProto Recv-Q Send-Q Local Address Foreign Address State PID/Program name Timer\n" +
		"tcp        0 108528 172.28.72.117:443       172.28.72.119:63132     ESTABLISHED 13308/nginx: worker  probe (0.16/0/0)\n"))
	f.Add([]byte("tcp6  362708      0 ::ffff:172.28.72.119:63132 :::*  ESTABLISHED 32278/java off (0.00/0/0)\nudp 0 0 0.0.0.0:68 0.0.0.0:* 1/x keepalive (7195.27/0/3)\nunix 2 [ ACC ] STREAM"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if sock, ok, problem := parseNetstatLine(string(line)); ok && problem == "" && sock.Tool != ToolNetstat {
				t.Fatalf("tool %q", sock.Tool)
			}
		}
		checkScan(t, data)
	})
}

// FuzzCounters feeds netstat -s and nstat output, with timestamps.
func FuzzCounters(f *testing.F) {
	f.Add([]byte("Sun Nov 22 11:25:10 UTC 2026\nTcp:\n    16 active connection openings\nTcpExt:\n    20 times the listen queue of a socket overflowed\n    TCPTimeouts: 16\nIcmp:\n    ICMP input histogram:\n        destination unreachable: 1\n"))
	f.Add([]byte("2436905 times the listen queue of a socket overflowed\n2436905 SYNs to LISTEN sockets ignored\n\n2436927 times the listen queue of a socket overflowed\n"))
	f.Add([]byte("2026-11-22T11:25:15,800770253+00:00\n#kernel\nTcpExtListenOverflows           28                 0.0\n1795343109\n#kernel\nTcpExtListenOverflows 32 0.0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkScan(t, data)
		for _, line := range bytes.Split(data, []byte("\n")) {
			parseStampLine(string(line), time.UTC)
		}
	})
}
