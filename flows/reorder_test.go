package flows

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wiremortem/evidence"
	"wiremortem/flows/capture"
	"wiremortem/internal/pcaptest"
	"wiremortem/internal/testenv"
)

// stampSink records, for every byte a side delivered, the packet the
// locator names.
type stampSink struct{ packets [2][]int64 }

func (s *stampSink) Data(from Side, b []byte, loc evidence.Locator) {
	for i := range b {
		s.packets[from] = append(s.packets[from], loc.At(i).Packet)
	}
}
func (s *stampSink) Gap(Side, int, evidence.Stamp) {}
func (s *stampSink) End(Side, evidence.Stamp)      {}
func (s *stampSink) Done() bool                    { return false }

// packetSource replays packets held in memory.
type packetSource struct {
	packets []capture.Packet
	next    int
}

func (p *packetSource) Next(out *capture.Packet) error {
	if p.next == len(p.packets) {
		return io.EOF
	}
	*out = p.packets[p.next]
	p.next++
	return nil
}

// TestReorderedBytesNameTheirPacket: a real conversation (the lab's chatty
// WebSocket) with two of the client's data segments swapped, as a network
// reorders them. Reassembly holds the early-arriving later segment until
// the gap before it fills, then delivers both: every byte must still name
// the packet that carried it. It named the packet that filled the gap (or
// any later one): reassembly kept a context shared by all packets.
func TestReorderedBytesNameTheirPacket(t *testing.T) {
	packets := pcaptest.Read(t, filepath.Join(testenv.RepoRoot(), "testdata", "captures", "ws-chatty", "capture.pcap"))
	// A data segment and the next one from the same side, well inside the
	// conversation.
	var eth layers.Ethernet
	var ip layers.IPv4
	var tcp layers.TCP
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip, &tcp)
	parser.IgnoreUnsupported = true
	type seg struct {
		src    string
		seq, n uint32
		ok     bool
	}
	segs := make([]seg, len(packets))
	for i, p := range packets {
		var decoded []gopacket.LayerType
		if parser.DecodeLayers(p.Data, &decoded) == nil && len(decoded) == 3 {
			segs[i] = seg{src: ip.SrcIP.String() + tcp.SrcPort.String(), seq: tcp.Seq, n: uint32(len(tcp.Payload)), ok: true}
		}
	}
	first, second := -1, -1
	for i := len(packets) / 3; i < len(packets) && second < 0; i++ {
		a := segs[i]
		if !a.ok || a.n == 0 {
			continue
		}
		for j := i + 1; j < len(packets); j++ {
			if b := segs[j]; b.ok && b.src == a.src && b.n > 0 {
				if b.seq == a.seq+a.n {
					first, second = i, j
				}
				break
			}
		}
	}
	if second < 0 {
		t.Fatal("no data segment followed by the next one from its side in the lab capture")
	}
	run := func(ps []capture.Packet) [2][]int64 {
		var sinks []*stampSink
		tr := NewTracker(Options{
			NewSink: func(*Conversation) Sink { s := &stampSink{}; sinks = append(sinks, s); return s },
			OnDone:  func(*Conversation, Sink) {},
		})
		if err := tr.Run(&packetSource{packets: ps}); err != nil {
			t.Fatal(err)
		}
		var all [2][]int64
		for _, s := range sinks {
			all[0] = append(all[0], s.packets[0]...)
			all[1] = append(all[1], s.packets[1]...)
		}
		return all
	}
	want := run(packets)
	// The second segment arrives just before the first.
	swapped := append([]capture.Packet(nil), packets[:first]...)
	swapped = append(swapped, packets[second])
	swapped = append(swapped, packets[first:second]...)
	swapped = append(swapped, packets[second+1:]...)
	// Each keeps its packet number: the order in the file changed, not
	// the packets.
	got := run(swapped)
	checked := 0
	for side := range want {
		if len(got[side]) != len(want[side]) {
			t.Fatalf("side %d: %d bytes delivered after the swap, %d before", side, len(got[side]), len(want[side]))
		}
		for i := range want[side] {
			if got[side][i] != want[side][i] {
				t.Fatalf("side %d byte %d: carried by packet %d, named packet %d after the swap", side, i, want[side][i], got[side][i])
			}
			if want[side][i] == packets[first].Ref.Packet || want[side][i] == packets[second].Ref.Packet {
				checked++
			}
		}
	}
	if checked == 0 {
		t.Error("no delivered byte came from the swapped packets")
	}
}
