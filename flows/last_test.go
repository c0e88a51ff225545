package flows

import (
	"testing"

	"wiremortem/internal/testenv"
)

// TestLastPackets checks each side's last packet and last new data against
// what tshark shows for the same trace (zeek/zeek Traces, BSD-3): in
// 206_example_b the client falls silent at frame 1225 while the server
// retransmits old data until its RST at frame 1302; the server's last new
// data is the 224-byte segment at frame 1213.
func TestLastPackets(t *testing.T) {
	convs, _ := track(t, testenv.Corpus(t, "zeek/testing/btest/Traces/http/206_example_b.pcap"))
	if len(convs) != 2 {
		t.Fatalf("%d conversations, want 2", len(convs))
	}
	tests := []struct {
		name           string
		got            *Traffic
		last, lastData int64
	}{
		{"conversation 1 client", &convs[0].FromClient, 1225, 956},
		{"conversation 1 server", &convs[0].FromServer, 1302, 1213},
		{"conversation 2 client", &convs[1].FromClient, 1556, 1306},
		{"conversation 2 server", &convs[1].FromServer, 1554, 1543},
	}
	for _, tt := range tests {
		if tt.got.Last == nil || tt.got.LastData == nil {
			t.Errorf("%s: last %v, last data %v", tt.name, tt.got.Last, tt.got.LastData)
			continue
		}
		if tt.got.Last.Packet != tt.last || tt.got.LastData.Packet != tt.lastData {
			t.Errorf("%s: last packet %d, last data %d; want %d, %d", tt.name, tt.got.Last.Packet, tt.got.LastData.Packet, tt.last, tt.lastData)
		}
	}
}
