package flows

import (
	"encoding/json"
	"testing"

	"wiremortem/evidence"
)

// Trim keeps what a finished conversation says (its JSON is the same byte
// for byte) and gives back the capacity its lists did not use.
func TestTrimKeepsContentAndFreesCapacity(t *testing.T) {
	c := &Conversation{ID: 1}
	c.KeyPackets = make([]KeyPacket, 0, 8)
	c.KeyPackets = append(c.KeyPackets, KeyPacket{Label: "syn", Flags: "S", Stamp: evidence.Stamp{Ref: evidence.Ref{Source: "a.pcap", Packet: 1}}})
	c.Windows.Client = make([]WindowSample, 0, 4) // empty but not nil: JSON []
	c.Handshake.SYNs = []evidence.Stamp{{Ref: evidence.Ref{Source: "a.pcap", Packet: 1}}}
	full := make([]WindowSample, 7, 8)
	c.Windows.Server = full
	before, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Trim()
	after, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("Trim changed the conversation:\n%s\n%s", before, after)
	}
	if cap(c.KeyPackets) != 1 {
		t.Errorf("key packets: cap %d after Trim, want 1", cap(c.KeyPackets))
	}
	if c.Windows.Client == nil || cap(c.Windows.Client) != 0 {
		t.Errorf("empty list: %#v after Trim, want empty and not nil", c.Windows.Client)
	}
	if &c.Windows.Server[0] != &full[0] {
		t.Error("a list using most of its capacity was copied")
	}
	if c.ZeroWindows != nil {
		t.Error("a nil list became non-nil")
	}
}
