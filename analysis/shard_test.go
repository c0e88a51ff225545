package analysis

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wiremortem/flows"
	"wiremortem/internal/pcaptest"
	"wiremortem/internal/scale"
	"wiremortem/internal/testenv"
)

// generated writes captures of thousands of conversations made of lab
// conversations (internal/scale): one spread over minutes, so that
// conversations linger, go idle and are swept while others start, with
// client addresses shared so that 4-tuples are reused; two at loopback
// speed, every conversation live at once or a few at a time. Zeek's HTTP trace with dropped
// segments joins the lab's, so that reassembly holds bytes across gaps
// while sweeps come and go.
func generated(t *testing.T) [][]string {
	paths := []string{testenv.Corpus(t, "zeek/testing/btest/Traces/http/zero-length-bodies-with-drops.pcap")}
	for _, name := range []string{"tcp-clean", "ws-echo", "ws-deflate", "syn-backlog", "syn-refused", "zero-window", "close-wait", "nginx-proxy"} {
		paths = append(paths, filepath.Join(testenv.RepoRoot(), "testdata", "captures", name, "capture.pcap"))
	}
	seeds := loadSeeds(t, paths)
	var out [][]string
	for i, o := range []struct {
		stretch float64
		opts    scale.Options
	}{
		{2000, scale.Options{Size: 6 << 20, Concurrent: 300, Clients: 400}},
		{1, scale.Options{Size: 3 << 20, Concurrent: 500}},
		// Few at once: a conversation's bytes held across a gap are let go
		// by a sweep, which each shard reaches after different packets.
		{1, scale.Options{Size: 3 << 20, Concurrent: 20}},
	} {
		stretched := make([]scale.Seed, len(seeds))
		for k, s := range seeds {
			stretched[k] = s.Clone()
			stretched[k].Stretch(o.stretch)
		}
		p := filepath.Join(t.TempDir(), fmt.Sprintf("generated-%d.pcap", i))
		res, err := scale.Write(p, stretched, o.opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d conversations over %v", p, res.Conversations, res.Span)
		out = append(out, []string{p})
	}
	// The last again with a clock that steps back: every 7th packet
	// stamped 3 s early, as when NTP steps the capturing host's clock or
	// a multi-queue NIC timestamps out of order.
	pkts := pcaptest.Read(t, out[2][0])
	for i := 6; i < len(pkts); i += 7 {
		pkts[i].Time = pkts[i].Time.Add(-3 * time.Second)
	}
	stepped := filepath.Join(t.TempDir(), "clock-steps.pcap")
	pcaptest.Write(t, stepped, pkts)
	return append(out, []string{stepped})
}

// TestShardsGiveTheSameDocument: following conversations on several
// goroutines (Options.Shards) gives the document and the flows table of
// one tracker, byte for byte: the same conversations with the same IDs,
// retries, listeners, sweeps, decoded HTTP and WebSocket, incidents and
// peak of live conversations. Every lab scenario (its captures and logs
// together, rotated parts included) and public traces with port reuse,
// scans, tunnels, truncation and mid-stream starts: every capture of the
// public corpus.
func TestShardsGiveTheSameDocument(t *testing.T) {
	cases := documentCases(t)
	run := func(files []string, shards int, tableOnly bool) []byte {
		return document(t, files, Options{Shards: shards, TableOnly: tableOnly, NoDecode: tableOnly})
	}
	conversations := 0
	for _, files := range cases {
		for _, tableOnly := range []bool{false, true} {
			want := run(files, 1, tableOnly)
			for _, shards := range []int{2, 3} {
				if got := run(files, shards, tableOnly); !bytes.Equal(got, want) {
					t.Errorf("%v, %d shards (table only %v): %s", files, shards, tableOnly, firstDifference(got, want))
				}
			}
			if !tableOnly {
				conversations += bytes.Count(want, []byte(`"conn_state"`))
			}
		}
	}
	if conversations < 5000 {
		t.Errorf("only %d conversations compared", conversations)
	}
}

// documentCases are the inputs of the tests that compare documents: every
// lab scenario with its logs, every capture of the public corpus and the
// generated captures.
func documentCases(t *testing.T) [][]string {
	var cases [][]string
	for _, dir := range labDirs(t) {
		var files []string
		for _, pattern := range []string{"*.pcap", "*.pcapng", "*.gz", "*.zst", "*.log", "*.txt", "*.strace"} {
			m, _ := filepath.Glob(filepath.Join(dir, pattern))
			files = append(files, m...)
		}
		if len(files) > 0 {
			cases = append(cases, files)
		}
	}
	corpus := testenv.Corpus(t, ".")
	err := filepath.WalkDir(corpus, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(p); !d.IsDir() && (ext == ".pcap" || ext == ".pcapng" || ext == ".cap" || ext == ".trace") {
			cases = append(cases, []string{p})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, generated(t)...)
	if len(cases) < 100 {
		t.Fatalf("only %d cases", len(cases))
	}
	return cases
}

// document runs the analysis of files with opts and returns its JSON
// document, or its flows table with opts.TableOnly.
func document(t *testing.T, files []string, opts Options) []byte {
	var inputs []Input
	for _, f := range files {
		inputs = append(inputs, Input{Path: f})
	}
	res, err := Run(context.Background(), inputs, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	var out bytes.Buffer
	if opts.TableOnly {
		err = res.WriteFlowTable(&out)
	} else {
		err = res.WriteJSON(&out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// firstDifference shows where got first differs from want.
func firstDifference(got, want []byte) string {
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("differs at byte %d:\n%s\nwant:\n%s", i, got[max(0, i-300):min(len(got), i+300)], want[max(0, i-300):min(len(want), i+300)])
}

// TestInOrderPathGivesTheSameDocument: bytes that arrive in order go to
// the decoders without gopacket's reassembly (flows.fastState) until a
// packet is not the next in order, a SYN, a FIN or a RST; the document is
// the one of reassembling every packet, on every input of
// TestShardsGiveTheSameDocument (retransmissions, reordering, gaps,
// mid-stream starts, port reuse, linger sweeps), on one tracker and on
// two shards.
//
// With an idle timeout longer than any capture: gopacket closes a
// connection when its last packet with data is older than the idle
// timeout, while the tracker keeps the conversation as long as pure ACKs
// come, and then reassembles the next data afresh, a spurious
// retransmission included (TestSpuriousRetransmissionAfterIdle); the
// in-order path has no such second start.
func TestInOrderPathGivesTheSameDocument(t *testing.T) {
	cases := documentCases(t)
	tracker := flows.Options{IdleTimeout: 1000 * time.Hour}
	all := tracker
	all.ReassembleAll = true
	decoded := 0
	for _, files := range cases {
		want := document(t, files, Options{Tracker: all})
		for _, shards := range []int{1, 2} {
			if got := document(t, files, Options{Tracker: tracker, Shards: shards}); !bytes.Equal(got, want) {
				t.Errorf("%v, %d shards: %s", files, shards, firstDifference(got, want))
			}
		}
		decoded += bytes.Count(want, []byte(`"opcode"`)) + bytes.Count(want, []byte(`"method"`))
	}
	if decoded < 5000 {
		t.Errorf("only %d decoded requests and WebSocket messages compared", decoded)
	}
}

// TestSpuriousRetransmissionAfterIdle: Zeek's trace of a request sent
// again 300 s after the server acknowledged it holds one request, as
// tshark says ("spurious retransmission"): the retransmitted bytes are
// not decoded as a second GET.
func TestSpuriousRetransmissionAfterIdle(t *testing.T) {
	out := document(t, []string{testenv.Corpus(t, "zeek/testing/btest/Traces/tcp/retransmit-timeout.pcapng")}, Options{})
	var doc struct {
		Conversations []struct {
			HTTP struct {
				Exchanges []json.RawMessage `json:"exchanges"`
			} `json:"http"`
		} `json:"conversations"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Conversations) != 1 || len(doc.Conversations[0].HTTP.Exchanges) != 1 {
		t.Fatalf("want one conversation with one exchange, got %s", out)
	}
}
