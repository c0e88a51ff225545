package sockstat

import (
	"fmt"
	"strings"
	"time"

	"wiremortem/decoders/logline"
)

// netstatProtos are the Proto column values of internet sockets.
var netstatProtos = map[string]string{
	"tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp", "udpl": "udp", "udpl6": "udp", "raw": "raw", "raw6": "raw",
}

// isNetstatHeader reports whether line is one of netstat's headers:
// "Active Internet connections (servers and established)" or
// "Proto Recv-Q Send-Q Local Address Foreign Address State ...".
func isNetstatHeader(line string) bool {
	return strings.HasPrefix(line, "Active Internet connections") ||
		(strings.HasPrefix(line, "Proto ") && strings.Contains(line, "Recv-Q") && strings.Contains(line, "Foreign Address"))
}

// isNetstatUnixLine reports whether line belongs to netstat's UNIX-domain
// section, which `netstat -a` prints after the internet sockets.
func isNetstatUnixLine(line string) bool {
	return strings.HasPrefix(line, "Active UNIX domain sockets") || strings.HasPrefix(line, "Proto RefCnt") ||
		strings.HasPrefix(line, "unix ")
}

// parseNetstatLine parses one socket line of netstat -an[tup][o]:
//
//	tcp        0 108528 172.28.72.117:443       172.28.72.119:63132     ESTABLISHED 13308/nginx: worker  probe (0.16/0/0)
//
// The process name may hold blanks, so the timer is taken from the right.
func parseNetstatLine(line string) (sock Socket, ok bool, problem string) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return Socket{}, false, ""
	}
	proto, known := netstatProtos[f[0]]
	if !known || !isDigits(f[1]) {
		return Socket{}, false, ""
	}
	sock = Socket{Tool: ToolNetstat, Proto: proto}
	var ok1, ok2 bool
	sock.RecvQ, ok1 = parseInt64(f[1])
	sock.SendQ, ok2 = parseInt64(f[2])
	if !ok1 || !ok2 {
		return Socket{}, true, fmt.Sprintf("queues %q %q are not numbers", f[1], f[2])
	}
	var okL, okP bool
	sock.Local, _, okL = parseEndpoint(f[3])
	sock.Peer, _, okP = parseEndpoint(f[4])
	if !okL || !okP {
		return Socket{}, true, fmt.Sprintf("addresses %q %q are not numeric address:port pairs (run netstat with -n; -W keeps IPv6 addresses whole)", f[3], f[4])
	}
	rest := f[5:]
	if n := len(rest); n >= 2 && strings.HasPrefix(rest[n-1], "(") && strings.HasSuffix(rest[n-1], ")") {
		timer, ok := parseNetstatTimer(rest[n-2], rest[n-1])
		if !ok {
			return Socket{}, true, fmt.Sprintf("bad timer %q", rest[n-2]+" "+rest[n-1])
		}
		sock.Timer = timer
		rest = rest[:n-2]
	}
	if len(rest) > 0 {
		if st, ok := parseState(rest[0]); ok {
			sock.State = st
			rest = rest[1:]
		} else if proto == "tcp" {
			return Socket{}, true, fmt.Sprintf("unknown TCP state %q", rest[0])
		}
	}
	if len(rest) > 0 && rest[0] != "-" {
		pidText, name, found := strings.Cut(strings.Join(rest, " "), "/")
		pid, ok := logline.ParseUint(pidText, 1<<31-1)
		if !found || !ok {
			return Socket{}, true, fmt.Sprintf("expected PID/Program name, found %q", strings.Join(rest, " "))
		}
		sock.Processes = []Process{{Name: name, PID: int(pid), FD: -1}}
	}
	return sock, true, ""
}

// parseNetstatTimer parses netstat -o's "keepalive (7195.27/0/0)": the
// timer, seconds left, retransmits, and keepalive or zero-window probes.
func parseNetstatTimer(name, value string) (*Timer, bool) {
	parts := strings.Split(value[1:len(value)-1], "/")
	if len(parts) != 3 {
		return nil, false
	}
	secs, ok1 := parseCentis(parts[0])
	retrans, ok2 := logline.ParseUint(parts[1], 1<<31-1)
	probes, ok3 := logline.ParseUint(parts[2], 1<<31-1)
	if !ok1 || !ok2 || !ok3 {
		return nil, false
	}
	return &Timer{Kind: timerKind(name), Name: name, Expires: secs, Retransmits: int(retrans), Probes: int(probes)}, true
}

// parseCentis reads netstat's "%.2f" seconds.
func parseCentis(s string) (time.Duration, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	secs, ok := logline.ParseUint(whole, 1<<31)
	if !ok || len(frac) > 9 {
		return 0, false
	}
	d := time.Duration(secs) * time.Second
	scale := time.Duration(100 * time.Millisecond)
	for i := 0; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return 0, false
		}
		d += time.Duration(frac[i]-'0') * scale
		scale /= 10
	}
	return d, true
}
