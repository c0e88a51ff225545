package strace

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"wiremortem/evidence"
)

// Mark is when and where something happened in the trace.
type Mark struct {
	evidence.Ref
	Time time.Time `json:"time,omitzero"`
}

// SocketLife is one socket file descriptor from its creation (or first
// sight) to its close, in one process's file-descriptor table.
type SocketLife struct {
	// PID is the process (or thread) whose table holds the fd; FD the
	// number. Aliases lists other numbers dup() gave the same socket.
	PID     int   `json:"pid"`
	FD      int   `json:"fd"`
	Aliases []int `json:"aliases,omitempty"`
	// Kind is "listener" (listen() called), "accepted" (returned by
	// accept), "connected" (connect() called) or "socket" (neither seen).
	Kind string `json:"kind"`
	// Local and Peer are the addresses, from bind, accept, connect,
	// getsockname, getpeername or strace -yy decorations.
	Local netip.AddrPort `json:"local,omitzero"`
	Peer  netip.AddrPort `json:"peer,omitzero"`
	// Backlog is listen()'s backlog argument.
	Backlog int `json:"backlog,omitempty"`
	// Opened is the socket()/accept() return or the first call seen.
	Opened Mark `json:"opened"`
	// Connect is connect()'s start (the SYN leaves right after) and
	// ConnectResult how it ended: "ok", "EINPROGRESS", "ECONNREFUSED",
	// "ETIMEDOUT"...
	Connect       *Mark  `json:"connect,omitempty"`
	ConnectResult string `json:"connect_result,omitempty"`
	// Accepts counts connections accepted on a listener.
	Accepts int64 `json:"accepts,omitempty"`

	BytesRead    int64 `json:"bytes_read"`
	BytesWritten int64 `json:"bytes_written"`
	Reads        int64 `json:"reads"`
	Writes       int64 `json:"writes"`
	// WouldBlock counts EAGAIN/EWOULDBLOCK results.
	WouldBlock int64 `json:"would_block,omitempty"`
	FirstRead  *Mark `json:"first_read,omitempty"`
	LastRead   *Mark `json:"last_read,omitempty"`
	FirstWrite *Mark `json:"first_write,omitempty"`
	LastWrite  *Mark `json:"last_write,omitempty"`
	// EOF is the first read that returned 0: the peer's FIN had arrived.
	EOF *Mark `json:"eof,omitempty"`
	// Error is the first failed read or write (ECONNRESET, EPIPE...).
	Error      *Mark  `json:"error,omitempty"`
	ErrorErrno string `json:"error_errno,omitempty"`
	Shutdown   *Mark  `json:"shutdown,omitempty"`
	// Closed is the close() of the last descriptor; nil when the trace
	// ends with the socket still open (see NeverClosed).
	Closed      *Mark `json:"closed,omitempty"`
	NeverClosed bool  `json:"never_closed"`
	// SharedTableGuess is set when the fd was used by a thread whose
	// clone() was not traced, and attributed to the table that had it open.
	SharedTableGuess bool `json:"shared_table_guess,omitempty"`

	// Events are the calls on the socket, capped (EventsOmitted counts
	// the rest).
	Events        []Event `json:"events"`
	EventsOmitted int64   `json:"events_omitted,omitempty"`

	refs int // descriptors referring to the socket
}

// Event is one call on a socket.
type Event struct {
	Mark
	// End is when the call returned (resumed, or start plus -T duration).
	End  time.Time `json:"end,omitzero"`
	Call string    `json:"call"`
	// Result is the return value as strace printed it ("4", "-1 EAGAIN").
	Result string `json:"result"`
	// Bytes moved, for reads and writes.
	Bytes int64 `json:"bytes,omitempty"`
	// Data is the start of the buffer as strace quoted it (C escapes), and
	// DataHex its first bytes in hex: what crossed the socket.
	Data    string `json:"data,omitempty"`
	DataHex string `json:"data_hex,omitempty"`
}

// maxEvents caps the events kept per socket: the first ones (how it
// started) and, in a ring, the last ones (how it ended).
const maxEvents = 48

func (s *SocketLife) addEvent(e Event) {
	if len(s.Events) < maxEvents {
		s.Events = append(s.Events, e)
		return
	}
	// Keep the first half; slide the second half along.
	half := maxEvents / 2
	copy(s.Events[half:], s.Events[half+1:])
	s.Events[maxEvents-1] = e
	s.EventsOmitted++
}

// parseFD reads an fd argument: "9", or "9<TCP:[10.0.0.1:80->10.0.0.2:5]>"
// with strace -y/-yy. It returns the fd, the decoration, and whether it is
// an fd at all.
func parseFD(arg string) (fd int, deco string, ok bool) {
	n := leadingDigits(arg)
	if n == 0 || n > 9 {
		return 0, "", false
	}
	fd, err := strconv.Atoi(arg[:n])
	if err != nil {
		return 0, "", false
	}
	rest := arg[n:]
	if rest == "" {
		return fd, "", true
	}
	if rest[0] == '<' && rest[len(rest)-1] == '>' {
		return fd, rest[1 : len(rest)-1], true
	}
	return 0, "", false
}

// decorationAddrs reads the addresses of a socket decoration:
// "TCP:[10.0.0.1:80->10.0.0.2:46407]", "TCPv6:[[::1]:80->[::1]:5555]",
// "TCP:[127.0.0.1:80]" (a bound or listening socket). ok is false for
// "socket:[1234]", "TCP:[1234]" (an inode) and files.
func decorationAddrs(deco string) (local, peer netip.AddrPort, isSocket bool) {
	proto, body, found := strings.Cut(deco, ":[")
	if !found || !strings.HasSuffix(body, "]") {
		return local, peer, strings.HasPrefix(deco, "socket:[")
	}
	switch proto {
	case "TCP", "TCPv6", "UDP", "UDPv6", "UNIX", "UNIX-STREAM", "NETLINK":
	default:
		return local, peer, false
	}
	body = body[:len(body)-1]
	l, p, _ := strings.Cut(body, "->")
	local, _ = netip.ParseAddrPort(l)
	if p != "" {
		peer, _ = netip.ParseAddrPort(p)
	}
	return local, peer, true
}

// parseSockaddr reads an AF_INET or AF_INET6 sockaddr as strace prints it.
func parseSockaddr(s string) (netip.AddrPort, bool) {
	var portText, addrText string
	switch {
	case strings.Contains(s, "sa_family=AF_INET6"):
		portText = between(s, "sin6_port=htons(", ")")
		addrText = between(s, "inet_pton(AF_INET6, \"", "\"")
	case strings.Contains(s, "sa_family=AF_INET"):
		portText = between(s, "sin_port=htons(", ")")
		addrText = between(s, "sin_addr=inet_addr(\"", "\"")
	default:
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	addr, err := netip.ParseAddr(addrText)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(port)), true
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}

// parseResult reads a return value: the number, the errno name, and the
// decoration of a returned fd (accept's new socket under -yy).
func parseResult(ret string) (n int64, errno, deco string, ok bool) {
	if ret == "" || ret[0] == '?' {
		return 0, "", "", false
	}
	num, rest, _ := strings.Cut(ret, " ")
	if strings.HasPrefix(num, "0x") {
		v, err := strconv.ParseInt(num[2:], 16, 64)
		return v, "", "", err == nil
	}
	if i := strings.IndexByte(num, '<'); i > 0 && strings.HasSuffix(num, ">") {
		deco = num[i+1 : len(num)-1]
		num = num[:i]
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		// A returned fd whose decoration holds spaces.
		if fd, d, okFD := parseFD(strings.SplitN(ret, " <", 2)[0]); okFD {
			return int64(fd), "", d, true
		}
		return 0, "", "", false
	}
	if v < 0 {
		errno, _, _ = strings.Cut(strings.TrimSpace(rest), " ")
	}
	return v, errno, deco, true
}

// dataArg returns a quoted buffer argument's text as strace printed it,
// capped, and the hex of its first bytes.
func dataArg(arg string) (text, hex string) {
	if !strings.HasPrefix(arg, "\"") {
		return "", ""
	}
	text = arg
	if len(text) > 96 {
		text = text[:96] + "..."
	}
	b := unquoteC(arg, 16)
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return text, sb.String()
}

// unquoteC decodes up to max bytes of a strace-quoted string: C escapes
// (\n, \t, \\, \", octal \210, hex \x88).
func unquoteC(s string, max int) []byte {
	if len(s) < 2 || s[0] != '"' {
		return nil
	}
	var out []byte
	for i := 1; i < len(s) && len(out) < max; i++ {
		c := s[i]
		if c == '"' {
			break
		}
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'v':
			out = append(out, '\v')
		case 'f':
			out = append(out, '\f')
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(s) && isHex(s[i+1]) {
				i++
				v = v*16 + hexVal(s[i])
				n++
			}
			out = append(out, byte(v))
		default:
			if e >= '0' && e <= '7' {
				v, n := int(e-'0'), 1
				for n < 3 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '7' {
					i++
					v = v*8 + int(s[i]-'0')
					n++
				}
				out = append(out, byte(v))
			} else {
				out = append(out, e)
			}
		}
	}
	return out
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}
