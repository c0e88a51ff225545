package scale

import (
	"path/filepath"
	"testing"

	"wiremortem/flows"
	"wiremortem/flows/capture"
	"wiremortem/internal/testenv"
)

// TestLoopbackSeedKeepsItsDirections: a seed captured on loopback has the
// same address at both ends (Zeek's wstunnel-ssh.pcap: 127.0.0.1 to
// 127.0.0.1:8888). Its copies must keep the two directions apart: telling
// them by address alone gave both directions the client's new address, so
// every copy became two one-way conversations (and a 101 without its
// request, which made a rule panic).
func TestLoopbackSeedKeepsItsDirections(t *testing.T) {
	seeds, err := Load(testenv.Corpus(t, "zeek/testing/btest/Traces/websocket/wstunnel-ssh.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(seeds) != 2 {
		t.Fatalf("%d conversations in the seed, want 2", len(seeds))
	}
	for i := range seeds {
		seeds[i].Stretch(0.01) // short copies, so several finish in a small file
	}
	path := filepath.Join(t.TempDir(), "copies.pcap")
	res, err := Write(path, seeds, Options{Size: 1 << 20, Concurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	r, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var convs []*flows.Conversation
	tr := flows.NewTracker(flows.Options{OnDone: func(c *flows.Conversation, _ flows.Sink) { convs = append(convs, c) }})
	if err := tr.Run(r); err != nil {
		t.Fatal(err)
	}
	if len(convs) < res.Conversations || len(convs) < 4 {
		t.Fatalf("%d conversations read back, %d copies written whole", len(convs), res.Conversations)
	}
	for _, c := range convs {
		if c.Originator != "syn" || c.FromClient.Packets == 0 || c.FromServer.Packets == 0 || c.Server.Port() != 8888 {
			t.Fatalf("conversation %d %s -> %s: originator %s, %d packets from the client and %d from the server: the copy lost a direction",
				c.ID, c.Client, c.Server, c.Originator, c.FromClient.Packets, c.FromServer.Packets)
		}
	}
}
