package flows

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wiremortem/flows/capture"
	"wiremortem/internal/pcaptest"
	"wiremortem/internal/testenv"
)

// TestRetransmissionAfterClose: the lab's clean HTTP exchange with its
// request and its response sent again a second after both FINs, while the
// closed conversation lingers. gopacket removed the connection at the
// close and starts a new one for them; those bytes are late (counted),
// not new bytes after the end, and the ends are said once (checkingSink
// fails the test otherwise). With and
// without its handshake (reassembly then starts wherever a side's first
// packet is).
func TestRetransmissionAfterClose(t *testing.T) {
	pkts := pcaptest.Read(t, filepath.Join(testenv.RepoRoot(), "testdata", "captures", "tcp-clean", "capture.pcap"))
	for _, handshake := range []bool{true, false} {
		var story, data []int
		for i, p := range pkts {
			tcp, _ := gopacket.NewPacket(p.Data, p.LinkType, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil || (tcp.SYN && !handshake) {
				continue
			}
			story = append(story, i)
			if len(tcp.Payload) > 0 {
				data = append(data, i)
			}
		}
		var packets []capture.Packet
		for _, i := range story {
			packets = append(packets, pkts[i])
		}
		end := packets[len(packets)-1].Time
		late := 0
		for _, i := range data[:2] { // the first request and its response
			p := pkts[i]
			p.Time = end.Add(time.Second)
			packets = append(packets, p)
			tcp := gopacket.NewPacket(p.Data, p.LinkType, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
			late += len(tcp.Payload)
		}
		var sinks []*checkingSink
		tr := NewTracker(Options{
			NewSink: func(*Conversation) Sink { s := &checkingSink{t: t}; sinks = append(sinks, s); return s },
			OnDone:  func(*Conversation, Sink) {},
		})
		if err := tr.Run(&packetSource{packets: packets}); err != nil {
			t.Fatal(err)
		}
		if len(sinks) == 0 || !sinks[0].ended[Client] || !sinks[0].ended[Server] {
			t.Fatalf("handshake %v: the first conversation did not end both ways: %v", handshake, sinks)
		}
		if got := tr.Stats().LateStreamBytes; got != int64(late) {
			t.Errorf("handshake %v: %d late bytes counted, want the %d sent again", handshake, got, late)
		}
	}
}
