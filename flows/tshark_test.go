package flows

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"wiremortem/internal/testenv"
)

// tsharkCounts is what tshark (Wireshark's dissector and its tcp.analysis
// expert flags) says about one 4-tuple.
type tsharkCounts struct {
	packets, zeroWindows, rsts, synRetransmissions int
}

// tuple names a conversation's endpoints regardless of direction.
func tuple(a, b netip.AddrPort) string {
	if a.Compare(b) > 0 {
		a, b = b, a
	}
	return a.String() + " " + b.String()
}

// runTshark returns per-4-tuple counts for a capture.
func runTshark(t *testing.T, tshark, path string) map[string]*tsharkCounts {
	t.Helper()
	cmd := exec.Command(tshark, "-n", "-r", path, "-Y", "tcp", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=l",
		"-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
		"-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "tcp.flags.reset",
		"-e", "tcp.analysis.zero_window", "-e", "tcp.analysis.retransmission", "-e", "icmp.type", "-e", "icmpv6.type")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		// tshark exits non-zero on a file cut short but still prints what
		// it read; only no output at all is a failure.
		t.Logf("tshark: %v: %s", err, stderr.String())
	}
	counts := map[string]*tsharkCounts{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 13 || f[11] != "" || f[12] != "" {
			// ICMP errors quote the TCP header that caused them; tshark
			// counts that header for the 4-tuple, the tuple's own packets
			// are what we compare.
			continue
		}
		src, dst := f[0], f[3]
		if src == "" {
			src, dst = f[1], f[4]
		}
		sp, _ := strconv.Atoi(f[2])
		dp, _ := strconv.Atoi(f[5])
		sa, err1 := netip.ParseAddr(src)
		da, err2 := netip.ParseAddr(dst)
		if err1 != nil || err2 != nil {
			continue
		}
		k := tuple(netip.AddrPortFrom(sa, uint16(sp)), netip.AddrPortFrom(da, uint16(dp)))
		c := counts[k]
		if c == nil {
			c = &tsharkCounts{}
			counts[k] = c
		}
		c.packets++
		set := func(s string) bool { return s == "1" || s == "True" }
		if f[9] != "" {
			c.zeroWindows++
		}
		if set(f[8]) {
			c.rsts++
		}
		if set(f[6]) && !set(f[7]) && f[10] != "" {
			c.synRetransmissions++
		}
	}
	return counts
}

// corpusCaptures lists every capture of the public corpus.
func corpusCaptures(t *testing.T) []string {
	root := testenv.Corpus(t, ".")
	var files []string
	for _, pattern := range []string{"*/*/*.pcap*", "*/*/*/*.pcap*", "*/*/*/*/*.pcap*", "*/*/*/*/*/*.pcap*", "*/*/*/*/*/*/*.pcap*"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		files = append(files, m...)
	}
	sort.Strings(files)
	return files
}

// tsharkDisagreements explains, per capture, where tshark and we differ by
// design. Every entry says why, and checkTunnelled fails when an entry
// goes stale. (Teredo.pcap and the MPLS 6in6 traces were listed here once;
// they agree with tshark: gopacket decodes Teredo, and tshark finds no
// TCP in the truncated 6in6 ones either.)
var tsharkDisagreements = map[string]string{
	"gre-aruba.pcap":               "GRE/802.11 encapsulation: tshark decodes the inner TCP; we do not decapsulate tunnels",
	"gtp2_different_udp_port.pcap": "GTP-U in UDP: tshark decodes the inner TCP; we do not decapsulate tunnels",
}

// portsOnly lists captures whose TCP header is cut after the ports: tshark
// still shows the packet under its 4-tuple, we cannot follow a conversation
// without flags and sequence numbers and count the packet as malformed.
var portsOnly = map[string]bool{"tcp_header_heapoverflow.pcap": true}

// TestAgainstTshark checks, on every public corpus capture, that we find the
// same TCP 4-tuples as tshark, and per 4-tuple the same number of
// zero-window adverts (tcp.analysis.zero_window), RST packets
// (tcp.flags.reset) and SYN retransmissions (tcp.analysis.retransmission on
// a SYN without ACK). tshark groups port reuse into one stream where we
// start a new conversation, so we compare sums per 4-tuple.
func TestAgainstTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	for _, path := range corpusCaptures(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if why, ok := tsharkDisagreements[name]; ok {
				checkTunnelled(t, tshark, path, why)
				return
			}
			compareWithTshark(t, tshark, path)
		})
	}
}

// compareWithTshark compares our per-4-tuple counts with tshark's on one
// capture.
func compareWithTshark(t *testing.T, tshark, path string) {
	name := filepath.Base(path)
	want := runTshark(t, tshark, path)
	convs, stats := track(t, path)
	got := map[string]*tsharkCounts{}
	for _, c := range convs {
		k := tuple(c.Client, c.Server)
		g := got[k]
		if g == nil {
			g = &tsharkCounts{}
			got[k] = g
		}
		g.packets += int(c.FromClient.Packets + c.FromServer.Packets)
		g.zeroWindows += int(c.FromClient.ZeroWindowAdverts + c.FromServer.ZeroWindowAdverts)
		g.rsts += int(c.FromClient.RSTs + c.FromServer.RSTs)
		g.synRetransmissions += int(c.Handshake.SYNRetransmissions)
	}
	for k, w := range want {
		g := got[k]
		if g == nil && portsOnly[name] && stats.Malformed >= int64(w.packets) {
			t.Logf("%s: tshark shows %d packets with only ports; we count them as malformed", k, w.packets)
			continue
		}
		if g == nil {
			t.Errorf("%s: tshark has %d packets, we have no conversation", k, w.packets)
			continue
		}
		if *g != *w {
			t.Errorf("%s: tshark %s, us %s", k, w, g)
		}
	}
	for k := range got {
		if want[k] == nil {
			t.Errorf("%s: we have a conversation tshark does not", k)
		}
	}
}

// checkTunnelled checks what we do with a capture whose TCP tshark finds
// only inside a tunnel we do not decapsulate: every packet is read and
// counted (none lost in silence), and none of tshark's inner conversations
// turns up misread as one of ours.
func checkTunnelled(t *testing.T, tshark, path, why string) {
	t.Logf("tunnelled: %s", why)
	want := runTshark(t, tshark, path)
	if len(want) == 0 {
		t.Fatalf("tshark finds no TCP in %s: the entry in tsharkDisagreements is stale", path)
	}
	convs, stats := track(t, path)
	for _, c := range convs {
		if k := tuple(c.Client, c.Server); want[k] != nil {
			t.Errorf("%s: tshark's inner conversation is one of ours: the tunnel is decapsulated now, compare it", k)
		}
	}
	if counted := stats.TCP + stats.NotTCP + stats.Fragments + stats.Malformed + stats.UnsupportedLink; counted != stats.Packets || stats.Packets == 0 {
		t.Errorf("%d packets read, %d counted by kind (%+v)", stats.Packets, counted, stats)
	}
}

func (c tsharkCounts) String() string {
	return fmt.Sprintf("packets=%d zero_windows=%d rsts=%d syn_retransmissions=%d", c.packets, c.zeroWindows, c.rsts, c.synRetransmissions)
}
