package flows

import "wiremortem/flows/seqnum"

// This file follows Zeek's TCP analyzer (src/packet_analysis/protocol/tcp/
// TCPSessionAdapter.cc and base/protocols/conn/main.zeek) closely enough
// that conn_state and history agree with Zeek's conn.log on the same
// capture. Checksums are not verified (captures taken on the sending host
// carry offloaded, unfilled checksums), so the 'C' letter never appears:
// this is Zeek run with -C.

// endpointState is Zeek's TCP endpoint state.
type endpointState uint8

const (
	stateInactive endpointState = iota
	stateSYNSent
	stateSYNACKSent
	statePartial
	stateEstablished
	stateClosed
	stateReset
)

// Bits of the history-seen mask, per endpoint; the responder's are shifted
// left by 16 (Zeek's TCP_Endpoint::CheckHistory).
const (
	histSYN uint32 = 1 << iota
	histFIN
	histRST
	histFINRST
	histData
	histACK
	histMulti
)

// maxHistory caps the history string; Zeek marks analysis cut short with
// 'x' and so do we.
const maxHistory = 120

// zeekEndpoint is the per-side state Zeek keeps for conn_state and history.
type zeekEndpoint struct {
	state, prevState endpointState
	// startSeq is the initial sequence number (or one before the first
	// byte seen, for partial connections); relative offsets count from it.
	startSeq seqnum.Value
	lastSeq  seqnum.Value // one past the highest sequence number sent
	ackSeq   seqnum.Value // highest sequence number the peer acknowledged
	// seqWraps counts how often lastSeq wrapped past 2^32 (connections over
	// 4 GB).
	seqWraps, ackWraps uint32

	finCount, rstCount int
	histLastSYN        int64
	histLastFIN        int64
	histLastRST        int64

	rxmtCount, rxmtThresh uint32
	win0Count, win0Thresh uint32
	gapCount, gapThresh   uint32

	didClose bool
}

func newZeekEndpoint() zeekEndpoint {
	return zeekEndpoint{histLastSYN: -1, histLastFIN: -1, histLastRST: -1, rxmtThresh: 1, win0Thresh: 1, gapThresh: 1}
}

func (e *zeekEndpoint) setState(s endpointState) {
	e.prevState, e.state = e.state, s
}

func (e *zeekEndpoint) isActive() bool {
	return e.state != stateInactive && !e.didClose
}

// relative returns seq relative to startSeq, accounting for wraps.
func (e *zeekEndpoint) relative(seq, last seqnum.Value, wraps uint32) (rel int64, underflow bool) {
	delta := seq.Sub(last)
	if delta < 0 && wraps > 0 && seq > last {
		wraps--
	} else if delta > 0 && seq < last {
		wraps++
	}
	if wraps == 0 {
		d := seq.Sub(e.startSeq)
		return d, d < 0
	}
	return int64(wraps)<<32 + int64(seq) - int64(e.startSeq), false
}

// size is Zeek's TCP_Endpoint::Size: the sequence space covered, from the
// highest of what was sent and what the peer acknowledged, minus SYN and FIN.
func (e *zeekEndpoint) size(peer *zeekEndpoint) int64 {
	if e.prevState == stateSYNSent && e.state == stateReset && peer.state == stateInactive && e.ackSeq == e.startSeq {
		// A half-open connection found and aborted: its sequence numbers
		// say nothing about data.
		return 0
	}
	last := int64(e.seqWraps)<<32 + int64(e.lastSeq)
	ack := int64(e.ackWraps)<<32 + int64(e.ackSeq)
	var size int64
	if last > ack {
		size = last - int64(e.startSeq)
	} else {
		size = ack - int64(e.startSeq)
	}
	if size > 0 {
		size--
	}
	if e.finCount > 0 && size > 0 {
		size--
	}
	return size
}

// history is the connection-wide history string and its seen mask.
type history struct {
	seen uint32
	b    []byte
}

func (h *history) add(c byte) {
	if len(h.b) < maxHistory {
		h.b = append(h.b, c)
	} else if len(h.b) == maxHistory {
		h.b = append(h.b, 'x')
	}
}

// check records code the first time mask is seen for this side.
func (h *history) check(orig bool, mask uint32, code byte) bool {
	if !orig {
		mask <<= 16
		code = lower(code)
	}
	if h.seen&mask != 0 {
		return false
	}
	h.seen |= mask
	h.add(code)
	return true
}

// scaled records code on the 1st, 10th, 100th... occurrence (Zeek's
// Connection::ScaledHistoryEntry).
func (h *history) scaled(orig bool, code byte, count, thresh *uint32) {
	*count++
	if *count != *thresh {
		return
	}
	if !orig {
		code = lower(code)
	}
	h.add(code)
	if next := *thresh * 10; next > *thresh {
		*thresh = next
	} else {
		*count = 0
	}
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// connState is Zeek's conn_state for TCP (base/protocols/conn/main.zeek).
func connState(orig, resp *zeekEndpoint, hist []byte) string {
	os, rs := orig.state, resp.state
	oInactive := os == stateInactive || os == statePartial
	rInactive := rs == stateInactive || rs == statePartial
	switch {
	case rs == stateReset:
		if os == stateSYNSent || os == stateSYNACKSent || (os == stateReset && orig.size(resp) == 0 && resp.size(orig) == 0) {
			return "REJ"
		}
		if oInactive {
			return "RSTRH"
		}
		return "RSTR"
	case os == stateReset:
		if rInactive {
			if rstos0History(hist) {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case rs == stateClosed && os == stateClosed:
		return "SF"
	case os == stateClosed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case rs == stateClosed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case os == stateSYNSent && rs == stateInactive:
		return "S0"
	case os == stateEstablished && rs == stateEstablished:
		return "S1"
	}
	return "OTH"
}

// rstos0History matches Zeek's /^\^?S[^HAFGIQ]*R.*/: the originator sent a
// SYN and then a RST with nothing from the responder in between.
func rstos0History(h []byte) bool {
	if len(h) > 0 && h[0] == '^' {
		h = h[1:]
	}
	if len(h) == 0 || h[0] != 'S' {
		return false
	}
	for _, c := range h[1:] {
		switch c {
		case 'R':
			return true
		case 'H', 'A', 'F', 'G', 'I', 'Q':
			return false
		}
	}
	return false
}

// likelyServerPorts approximates Zeek's likely_server_ports (the ports its
// protocol analyzers register for), plus the proxy and application ports
// this tool is used on. A conversation whose first captured packet is not a
// SYN is flipped when its source port is in this set (Zeek's
// TCPAnalyzer::WantConnection).
var likelyServerPorts = func() map[uint16]bool {
	m := map[uint16]bool{}
	for _, p := range []uint16{
		21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 137, 139, 143, 389, 443, 445, 502, 563, 585, 587,
		614, 631, 636, 989, 990, 992, 993, 995, 1080, 1433, 1434, 1883, 2049, 2811, 3128, 3306, 3389,
		5060, 5061, 5222, 5223, 5269, 5432, 5672, 5900, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8443,
		8888, 9092, 9200, 9501, 11211, 27017,
	} {
		m[p] = true
	}
	return m
}()
