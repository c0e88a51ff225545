package flows

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wiremortem/flows/capture"
	"wiremortem/flows/seqnum"
)

// TCP flag bits as they sit in byte 13 of the header (RFC 793 section 3.1,
// RFC 3168 for ECE/CWR).
const (
	flagFIN uint8 = 1 << iota
	flagSYN
	flagRST
	flagPSH
	flagACK
	flagURG
	flagECE
	flagCWR
)

// segment is one decoded TCP packet: everything the tracker needs, copied
// out of the gopacket layers so the layers can be reused for the next
// packet.
type segment struct {
	src, dst netip.AddrPort
	seq, ack seqnum.Value
	flags    uint8
	window   uint16 // raw, unscaled
	// SYN options; wscale is -1 when the option is absent.
	wscale        int8
	wscaleOver14  bool
	mss           uint16
	sackPermitted bool
	// payload is the captured payload; payloadLen is the real length from the
	// IP header, larger than len(payload) when the snap length cut the packet.
	payload    []byte
	payloadLen int
	ipBytes    int
	// headerOnly is set when the TCP options could not be decoded (cut by
	// the snap length or crafted): only the fixed header is known.
	headerOnly bool
}

func (s *segment) has(f uint8) bool { return s.flags&f != 0 }

// packetKind classifies every packet read, so that the summary can account
// for each one (no silent loss).
type packetKind int

const (
	kindTCP packetKind = iota
	kindNotTCP
	kindFragment
	kindMalformed
	kindUnsupportedLink
)

// decoder turns link-layer frames into segments with gopacket's
// DecodingLayerParser: preallocated layers, no per-packet allocation.
type decoder struct {
	eth     layers.Ethernet
	llc     layers.LLC
	snap    layers.SNAP
	dot1q   layers.Dot1Q
	sll     layers.LinuxSLL
	sll2    layers.LinuxSLL2
	loop    layers.Loopback
	ip4     layers.IPv4
	ip6     layers.IPv6
	ip6ext  layers.IPv6ExtensionSkipper
	tcp     layers.TCP
	payload gopacket.Payload

	byLink  map[layers.LinkType]*gopacket.DecodingLayerParser
	fromIP4 *gopacket.DecodingLayerParser
	fromIP6 *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
	// headerOnly is set when only the fixed TCP header could be decoded:
	// the packet carries no usable payload or options.
	headerOnly bool
}

func newDecoder() *decoder {
	d := &decoder{byLink: map[layers.LinkType]*gopacket.DecodingLayerParser{}}
	common := []gopacket.DecodingLayer{&d.llc, &d.snap, &d.dot1q, &d.ip4, &d.ip6, &d.ip6ext, &d.tcp, &d.payload}
	parser := func(first gopacket.LayerType, extra ...gopacket.DecodingLayer) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first, append(extra, common...)...)
		// Layer types are small integers: an array lookup beats the
		// default map on every layer of every packet.
		p.SetDecodingLayerContainer(gopacket.DecodingLayerArray(nil))
		for _, l := range append(extra, common...) {
			p.AddDecodingLayer(l)
		}
		// Anything above TCP (the payload) and anything that is not
		// IP/TCP (ARP, UDP, ICMP...) ends decoding without an error: we
		// look at what was decoded instead.
		p.IgnoreUnsupported = true
		return p
	}
	d.byLink[layers.LinkTypeEthernet] = parser(layers.LayerTypeEthernet, &d.eth)
	d.byLink[layers.LinkTypeLinuxSLL] = parser(layers.LayerTypeLinuxSLL, &d.sll)
	d.byLink[layers.LinkTypeLinuxSLL2] = parser(layers.LayerTypeLinuxSLL2, &d.sll2)
	d.byLink[layers.LinkTypeNull] = parser(layers.LayerTypeLoopback, &d.loop)
	d.byLink[layers.LinkTypeLoop] = parser(layers.LayerTypeLoopback, &d.loop)
	d.fromIP4 = parser(layers.LayerTypeIPv4)
	d.fromIP6 = parser(layers.LayerTypeIPv6)
	d.decoded = make([]gopacket.LayerType, 0, 8)
	return d
}

// Link types that carry a bare IP packet. LINKTYPE_RAW is 101 in files; the
// DLT values 12 and 14 are what some BSDs wrote for it.
var rawIPLinkTypes = map[layers.LinkType]bool{
	layers.LinkTypeRaw: true, layers.LinkTypeIPv4: true, layers.LinkTypeIPv6: true, 12: true, 14: true,
}

var errNoIP = errors.New("no IP header")

// decode fills seg from one captured frame.
func (d *decoder) decode(p *capture.Packet, seg *segment) packetKind {
	d.decoded = d.decoded[:0]
	d.headerOnly = false
	var err error
	switch parser := d.byLink[p.LinkType]; {
	case parser != nil:
		err = parser.DecodeLayers(p.Data, &d.decoded)
		if err == nil && len(d.decoded) > 0 {
			// MPLS is not a DecodingLayer in gopacket: strip the label
			// stack ourselves and go on from the IP header.
			if mpls := d.mplsPayload(); mpls != nil {
				d.decoded = d.decoded[:0]
				err = d.decodeIP(mpls)
			}
		}
	case rawIPLinkTypes[p.LinkType]:
		err = d.decodeIP(p.Data)
	default:
		return kindUnsupportedLink
	}
	var ipLayer gopacket.LayerType
	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeIPv4, layers.LayerTypeIPv6:
			ipLayer = lt
		case layers.LayerTypeTCP:
			if err == nil {
				return d.fill(ipLayer, p, seg)
			}
		}
	}
	if err != nil && err != errNoIP && (ipLayer == 0 || !d.ipNextIsTCP(ipLayer)) {
		return kindMalformed
	}
	if ipLayer == layers.LayerTypeIPv4 && (d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0) {
		return kindFragment
	}
	if ipLayer == layers.LayerTypeIPv6 && d.ip6ext.NextHeader == layers.IPProtocolIPv6Fragment {
		return kindFragment
	}
	if ipLayer == 0 && err == errNoIP {
		return kindNotTCP
	}
	if ipLayer != 0 && d.ipNextIsTCP(ipLayer) {
		// IP said TCP follows but gopacket could not decode the header:
		// options cut by the snap length, or crafted options that run
		// past the packet. The fixed 20 bytes still tell ports, flags,
		// sequence numbers and window.
		if d.fixedTCPHeader(ipLayer) {
			return d.fill(ipLayer, p, seg)
		}
		return kindMalformed
	}
	return kindNotTCP
}

// fixedTCPHeader decodes the 20-byte fixed TCP header into d.tcp when the
// whole header could not be decoded; options and payload are left empty.
func (d *decoder) fixedTCPHeader(ip gopacket.LayerType) bool {
	var b []byte
	if ip == layers.LayerTypeIPv4 {
		b = d.ip4.Payload
	} else {
		b = d.ip6.Payload
	}
	if len(b) < 20 {
		return false
	}
	t := &d.tcp
	t.SrcPort = layers.TCPPort(binary.BigEndian.Uint16(b[0:2]))
	t.DstPort = layers.TCPPort(binary.BigEndian.Uint16(b[2:4]))
	t.Seq = binary.BigEndian.Uint32(b[4:8])
	t.Ack = binary.BigEndian.Uint32(b[8:12])
	t.DataOffset = b[12] >> 4
	if t.DataOffset < 5 {
		return false
	}
	f := b[13]
	t.FIN, t.SYN, t.RST, t.PSH = f&0x01 != 0, f&0x02 != 0, f&0x04 != 0, f&0x08 != 0
	t.ACK, t.URG, t.ECE, t.CWR = f&0x10 != 0, f&0x20 != 0, f&0x40 != 0, f&0x80 != 0
	t.NS = b[12]&0x01 != 0
	t.Window = binary.BigEndian.Uint16(b[14:16])
	t.Checksum = binary.BigEndian.Uint16(b[16:18])
	t.Urgent = binary.BigEndian.Uint16(b[18:20])
	t.Options = t.Options[:0]
	t.Contents = b[:20]
	t.Payload = nil
	d.headerOnly = true
	return true
}

func (d *decoder) ipNextIsTCP(ip gopacket.LayerType) bool {
	if ip == layers.LayerTypeIPv4 {
		return d.ip4.Protocol == layers.IPProtocolTCP && d.ip4.Flags&layers.IPv4MoreFragments == 0 && d.ip4.FragOffset == 0
	}
	return d.ip6.NextHeader == layers.IPProtocolTCP
}

func (d *decoder) decodeIP(data []byte) error {
	if len(data) == 0 {
		return errNoIP
	}
	switch data[0] >> 4 {
	case 4:
		return d.fromIP4.DecodeLayers(data, &d.decoded)
	case 6:
		return d.fromIP6.DecodeLayers(data, &d.decoded)
	}
	return errNoIP
}

// mplsPayload returns the bytes after an MPLS label stack when the last
// decoded link layer announced MPLS unicast (RFC 3032: 4-byte entries, the
// S bit marks the bottom of the stack).
func (d *decoder) mplsPayload() []byte {
	last := d.decoded[len(d.decoded)-1]
	var rest []byte
	switch {
	case last == layers.LayerTypeEthernet && d.eth.EthernetType == layers.EthernetTypeMPLSUnicast:
		rest = d.eth.Payload
	case last == layers.LayerTypeDot1Q && d.dot1q.Type == layers.EthernetTypeMPLSUnicast:
		rest = d.dot1q.Payload
	default:
		return nil
	}
	for len(rest) >= 4 {
		bottom := rest[2]&1 == 1
		rest = rest[4:]
		if bottom {
			return rest
		}
	}
	return nil
}

// fill copies the decoded TCP/IP fields into seg.
func (d *decoder) fill(ip gopacket.LayerType, p *capture.Packet, seg *segment) packetKind {
	t := &d.tcp
	hdrLen := int(t.DataOffset) * 4
	if hdrLen < 20 {
		return kindMalformed
	}
	var src, dst netip.Addr
	realPayload := len(t.Payload)
	if ip == layers.LayerTypeIPv4 {
		if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
			return kindFragment
		}
		src = netip.AddrFrom4([4]byte(d.ip4.SrcIP.To4()))
		dst = netip.AddrFrom4([4]byte(d.ip4.DstIP.To4()))
		seg.ipBytes = int(d.ip4.Length)
		// The IP header tells the real segment length, also when the snap
		// length cut the packet (and for TSO captures where it reads 0,
		// gopacket substitutes the captured length).
		if n := int(d.ip4.Length) - int(d.ip4.IHL)*4 - hdrLen; n >= realPayload {
			realPayload = n
		}
	} else {
		src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
		dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
		seg.ipBytes = int(d.ip6.Length) + 40
		if d.ip6.Length != 0 {
			// Bytes between the IPv6 header and TCP are extension headers.
			ext := len(d.ip6.Payload) - len(t.Contents) - len(t.Payload)
			if n := int(d.ip6.Length) - ext - hdrLen; n >= realPayload {
				realPayload = n
			}
		}
	}
	seg.src = netip.AddrPortFrom(src, uint16(t.SrcPort))
	seg.dst = netip.AddrPortFrom(dst, uint16(t.DstPort))
	seg.seq, seg.ack = seqnum.Value(t.Seq), seqnum.Value(t.Ack)
	seg.flags = tcpFlags(t)
	seg.window = t.Window
	seg.payload = t.Payload
	seg.payloadLen = realPayload
	seg.wscale, seg.wscaleOver14, seg.mss, seg.sackPermitted = -1, false, 0, false
	seg.headerOnly = d.headerOnly
	if t.SYN && !d.headerOnly {
		parseSYNOptions(t.Contents[20:], seg)
	}
	return kindTCP
}

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	for _, b := range [...]struct {
		set bool
		bit uint8
	}{{t.FIN, flagFIN}, {t.SYN, flagSYN}, {t.RST, flagRST}, {t.PSH, flagPSH}, {t.ACK, flagACK}, {t.URG, flagURG}, {t.ECE, flagECE}, {t.CWR, flagCWR}} {
		if b.set {
			f |= b.bit
		}
	}
	return f
}

// parseSYNOptions reads MSS, window scale and SACK-permitted from the raw
// option bytes (RFC 793, RFC 7323, RFC 2018), checking each length against
// what is left, the way the kernel's tcp_parse_options does.
func parseSYNOptions(b []byte, seg *segment) {
	for len(b) > 0 {
		kind := b[0]
		if kind == 0 { // end of options
			return
		}
		if kind == 1 { // no-op
			b = b[1:]
			continue
		}
		if len(b) < 2 {
			return
		}
		n := int(b[1])
		if n < 2 || n > len(b) {
			return
		}
		switch {
		case kind == 2 && n == 4:
			seg.mss = binary.BigEndian.Uint16(b[2:4])
		case kind == 3 && n == 3:
			// RFC 7323 section 2.3: a shift over 14 is treated as 14
			// (and logged: Linux does the same in tcp_parse_options).
			seg.wscale = int8(min(b[2], 14))
			seg.wscaleOver14 = b[2] > 14
		case kind == 4 && n == 2:
			seg.sackPermitted = true
		}
		b = b[n:]
	}
}
