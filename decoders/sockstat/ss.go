package sockstat

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"wiremortem/decoders/logline"
)

// netids are ss's Netid column values for internet sockets; the protocol
// is the Netid ("tcp6" never appears: ss has one Netid per protocol).
var netids = map[string]bool{"tcp": true, "udp": true, "raw": true, "sctp": true, "mptcp": true, "dccp": true}

// otherNetids are ss's Netids of sockets that are not internet sockets.
var otherNetids = map[string]bool{
	"u_str": true, "u_dgr": true, "u_seq": true, "nl": true, "p_raw": true, "p_dgr": true,
	"v_str": true, "v_dgr": true, "xdp": true, "tipc": true, "???": true,
}

// isSSHeader reports whether line is ss's column header:
// "State Recv-Q Send-Q Local Address:Port Peer Address:Port Process",
// optionally with Netid first or without State (a state filter).
func isSSHeader(line string) bool {
	return strings.Contains(line, "Recv-Q") && strings.Contains(line, "Local Address:Port")
}

// ssTokens splits an ss line on blanks, keeping a parenthesised value such
// as users:(("Web Content",pid=1,fd=3)) in one token even if a process name
// holds a blank.
func ssTokens(line string) []string {
	var toks []string
	i := 0
	for i < len(line) {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		start, depth, quoted := i, 0, false
		for i < len(line) && (quoted || depth > 0 || (line[i] != ' ' && line[i] != '\t')) {
			switch c := line[i]; {
			case c == '"':
				quoted = !quoted
			case quoted:
			case c == '(':
				depth++
			case c == ')' && depth > 0:
				depth--
			}
			i++
		}
		toks = append(toks, line[start:i])
	}
	return toks
}

// parseSSLine parses one socket line of ss. It returns ok=false when the
// line is not shaped like one, and a problem when it is but a field is bad.
func parseSSLine(line string) (sock Socket, ok bool, problem string) {
	toks := ssTokens(line)
	if len(toks) < 2 {
		return Socket{}, false, ""
	}
	sock = Socket{Tool: ToolSS, Proto: "tcp"}
	switch {
	case netids[toks[0]] && len(toks) > 1 && isStateWord(toks[1]):
		sock.Proto = toks[0]
		toks = toks[1:]
		fallthrough
	case isStateWord(toks[0]):
		sock.State, _ = parseState(toks[0])
		toks = toks[1:]
	case otherNetids[toks[0]]:
		return Socket{}, true, fmt.Sprintf("not an internet socket: Netid %q", toks[0])
	case isDigits(toks[0]) && len(toks) >= 4:
		// ss with a state filter prints no State column.
	default:
		return Socket{}, false, ""
	}
	if len(toks) < 4 {
		return Socket{}, true, "fewer than four columns after the state"
	}
	var okQ1, okQ2 bool
	sock.RecvQ, okQ1 = parseInt64(toks[0])
	sock.SendQ, okQ2 = parseInt64(toks[1])
	switch {
	case sock.State == StateUnknown && (!okQ2 || !strings.Contains(toks[2], ":")):
		// Not a socket line after all: a line that starts with a number,
		// such as netstat -s's "28 SYNs to LISTEN sockets dropped".
		return Socket{}, false, ""
	case !okQ1 || !okQ2:
		return Socket{}, true, fmt.Sprintf("queues %q %q are not numbers", toks[0], toks[1])
	}
	var okL, okP bool
	var iface string
	sock.Local, sock.Interface, okL = parseEndpoint(toks[2])
	sock.Peer, iface, okP = parseEndpoint(toks[3])
	if !okL || !okP {
		return Socket{}, true, fmt.Sprintf("addresses %q %q are not numeric address:port pairs (run ss with -n)", toks[2], toks[3])
	}
	if sock.Interface == "" {
		sock.Interface = iface
	}
	var extra []string
	for _, t := range toks[4:] {
		switch key, value, _ := strings.Cut(t, ":"); key {
		case "users":
			procs, ok := parseSSUsers(value)
			if !ok {
				return Socket{}, true, fmt.Sprintf("bad process list %q", t)
			}
			sock.Processes = procs
		case "timer":
			timer, ok := parseSSTimer(value)
			if !ok {
				return Socket{}, true, fmt.Sprintf("bad timer %q", t)
			}
			sock.Timer = timer
		case "ino":
			if n, ok := logline.ParseUint(value, 1<<64-1); ok {
				sock.Inode = n
				continue
			}
			extra = append(extra, t)
		case "uid":
			if n, ok := logline.ParseUint(value, 1<<32-1); ok {
				uid := uint32(n)
				sock.UID = &uid
				continue
			}
			extra = append(extra, t)
		default:
			extra = append(extra, t)
		}
	}
	sock.Extra = strings.Join(extra, " ")
	return sock, true, ""
}

func isStateWord(s string) bool {
	_, ok := parseState(s)
	return ok
}

func isDigits(s string) bool {
	_, ok := logline.ParseUint(s, 1<<63-1)
	return ok
}

// parseSSUsers parses the value of
// users:(("nginx",pid=13308,fd=7),("nginx",pid=13307,fd=7)).
func parseSSUsers(v string) ([]Process, bool) {
	if !strings.HasPrefix(v, "(") || !strings.HasSuffix(v, ")") {
		return nil, false
	}
	v = v[1 : len(v)-1]
	var procs []Process
	for v != "" {
		if !strings.HasPrefix(v, `("`) {
			return nil, false
		}
		end := strings.Index(v[2:], `",`)
		if end < 0 {
			return nil, false
		}
		p := Process{Name: v[2 : 2+end], FD: -1}
		rest := v[2+end+2:]
		close := strings.IndexByte(rest, ')')
		if close < 0 {
			return nil, false
		}
		for i, kv := range strings.Split(rest[:close], ",") {
			key, value, named := strings.Cut(kv, "=")
			if !named {
				// iproute2 before 3.x: users:(("nginx",13308,7)).
				key, value = [...]string{"pid", "fd", ""}[min(i, 2)], kv
			}
			n, ok := logline.ParseUint(value, 1<<31-1)
			if !ok {
				return nil, false
			}
			switch key {
			case "pid":
				p.PID = int(n)
			case "fd":
				p.FD = int(n)
			}
		}
		procs = append(procs, p)
		v = strings.TrimPrefix(rest[close+1:], ",")
	}
	return procs, len(procs) > 0
}

// parseSSTimer parses the value of timer:(keepalive,119min,0).
func parseSSTimer(v string) (*Timer, bool) {
	if !strings.HasPrefix(v, "(") || !strings.HasSuffix(v, ")") {
		return nil, false
	}
	parts := strings.Split(v[1:len(v)-1], ",")
	if len(parts) != 3 {
		return nil, false
	}
	expires, ok1 := parseSSDuration(parts[1])
	retrans, ok2 := logline.ParseUint(parts[2], 1<<31-1)
	if !ok1 || !ok2 {
		return nil, false
	}
	return &Timer{Kind: timerKind(parts[0]), Name: parts[0], Expires: expires, Retransmits: int(retrans)}, true
}

// parseSSDuration reads ss's print_ms_timer: "119min", "1min30sec", "58sec",
// "184ms", "1.392ms" (which is 1 s and 392 ms), "" for zero, "-" when past.
func parseSSDuration(s string) (time.Duration, bool) {
	var d time.Duration
	for s != "" && s != "-" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, ok := logline.ParseUint(s[:i], 1<<31)
		if !ok {
			return 0, false
		}
		s = s[i:]
		switch {
		case strings.HasPrefix(s, "min"):
			d += time.Duration(n) * time.Minute
			s = s[3:]
		case strings.HasPrefix(s, "sec"):
			d += time.Duration(n) * time.Second
			s = s[3:]
		case strings.HasPrefix(s, "ms"):
			d += time.Duration(n) * time.Millisecond
			s = s[2:]
		case strings.HasPrefix(s, "."):
			// Seconds, then milliseconds: "%d." then "%03dms".
			ms, ok := logline.ParseUint(strings.TrimSuffix(s[1:], "ms"), 999)
			if !ok || !strings.HasSuffix(s, "ms") || len(s) != len(".000ms") {
				return 0, false
			}
			return d + time.Duration(n)*time.Second + time.Duration(ms)*time.Millisecond, true
		default:
			return 0, false
		}
	}
	return d, true
}

// parseTCPInfo reads the numbers rules use out of ss -i's detail line.
func parseTCPInfo(line string) *TCPInfo {
	info := &TCPInfo{Raw: strings.TrimSpace(line)}
	for _, t := range strings.Fields(line) {
		key, value, found := strings.Cut(t, ":")
		if !found {
			continue
		}
		switch key {
		case "rto":
			info.RTO = millis(value)
		case "rtt":
			avg, dev, _ := strings.Cut(value, "/")
			info.RTT, info.RTTVar = millis(avg), millis(dev)
		case "cwnd":
			info.CWnd, _ = parseInt64(value)
		case "snd_wnd":
			info.SendWindow, _ = parseInt64(value)
		case "unacked":
			info.Unacked, _ = parseInt64(value)
		case "retrans":
			now, total, _ := strings.Cut(value, "/")
			info.Retrans, _ = parseInt64(now)
			info.RetransTotal, _ = parseInt64(total)
		case "lost":
			info.Lost, _ = parseInt64(value)
		case "backoff":
			info.Backoff, _ = parseInt64(value)
		case "lastsnd":
			info.LastSend = millis(value)
		case "lastrcv":
			info.LastRecv = millis(value)
		case "lastack":
			info.LastAck = millis(value)
		case "bytes_sent":
			info.BytesSent, _ = parseInt64(value)
		case "bytes_acked":
			info.BytesAcked, _ = parseInt64(value)
		case "bytes_received":
			info.BytesReceived, _ = parseInt64(value)
		case "notsent":
			info.NotSent, _ = parseInt64(value)
		}
	}
	return info
}

// millis reads ss's milliseconds ("204", "0.006"); 0 if malformed.
func millis(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= 0 && f <= 1e12) {
		return 0
	}
	return time.Duration(f * float64(time.Millisecond))
}
