package batch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"wiremortem/internal/pcaptest"
	"wiremortem/internal/scale"
	"wiremortem/internal/testenv"
)

// corpusTraces are real captures from Zeek's test suite used to build an
// archive (zeek/zeek, BSD-3; see ../shared/corpus/README.md).
var corpusTraces = []string{
	"wikipedia.pcap", "rotation.pcap", "nmap-vsn.pcap", "smtp.pcap", "conn-size.pcap",
	"http/get_nosyn.pcap", "http/websocket.pcap", "pop3/pop3.pcap", "tcp/miss_end_data.pcap",
	"tcp/missing-syn.pcap", "tcp/fin_retransmission.pcap", "websocket/wstunnel-http.pcap",
}

// buildArchive lays out 20 capture files: 12 plain, 3 gzip, 1 zstd, one
// capture rotated into 3 parts, and one corrupt file.
func buildArchive(t *testing.T) (root string, groups int) {
	root = t.TempDir()
	base := testenv.Corpus(t, "zeek/testing/btest/Traces")
	for i, rel := range corpusTraces {
		data, err := os.ReadFile(filepath.Join(base, rel))
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(rel)
		switch {
		case i < 3:
			var b bytes.Buffer
			w := gzip.NewWriter(&b)
			w.Write(data)
			w.Close()
			data, name = b.Bytes(), name+".gz"
		case i == 3:
			var b bytes.Buffer
			w, _ := zstd.NewWriter(&b)
			w.Write(data)
			w.Close()
			data, name = b.Bytes(), name+".zst"
		}
		dir := filepath.Join(root, "host"+string(rune('a'+i%3)))
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// One capture rotated the way tcpdump -C names the parts.
	rotate(t, filepath.Join(base, "http/206_example_b.pcap"), filepath.Join(root, "rotated", "dump.pcap"), 3)
	// One capture cut short, and one not a capture at all... pretending.
	good, _ := os.ReadFile(filepath.Join(base, "tcp/handshake-reorder.pcap"))
	os.MkdirAll(filepath.Join(root, "broken"), 0o755)
	os.WriteFile(filepath.Join(root, "broken", "cut.pcap"), good[:len(good)/2], 0o644)
	os.WriteFile(filepath.Join(root, "broken", "bogus.pcap"), append([]byte{0xd4, 0xc3, 0xb2, 0xa1}, bytes.Repeat([]byte{0xff}, 8)...), 0o644)
	return root, len(corpusTraces) + 1 + 2
}

// rotate splits a capture into n parts named like tcpdump -C does.
func rotate(t *testing.T, src, dst string, n int) {
	pkts := pcaptest.Read(t, src)
	os.MkdirAll(filepath.Dir(dst), 0o755)
	per := (len(pkts) + n - 1) / n
	for i := 0; i < n; i++ {
		name := dst
		if i > 0 {
			name = dst + string(rune('0'+i))
		}
		pcaptest.Write(t, name, pkts[i*per:min(len(pkts), (i+1)*per)])
	}
}

func TestBatchSweepResumeAndShards(t *testing.T) {
	root, wantGroups := buildArchive(t)
	groups, unpaired, err := Discover([]string{root})
	if err != nil {
		t.Fatal(err)
	}
	if len(unpaired) != 0 {
		t.Errorf("unpaired files: %v", unpaired)
	}
	if len(groups) != wantGroups {
		var names []string
		for _, g := range groups {
			names = append(names, g.Name)
		}
		t.Fatalf("%d groups, want %d: %v", len(groups), wantGroups, names)
	}
	var rotated *Group
	for i := range groups {
		if groups[i].Name == "rotated__dump" {
			rotated = &groups[i]
		}
	}
	if rotated == nil || len(rotated.Captures) != 3 {
		t.Fatalf("rotated parts not grouped: %+v", rotated)
	}

	out := t.TempDir()
	entries, err := Run(context.Background(), groups, Options{Out: out, Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]Entry{}
	for _, e := range entries {
		status[e.Group] = e
		if e.Status == "analysed" {
			if _, err := os.Stat(filepath.Join(out, e.JSON)); err != nil {
				t.Errorf("%s: no report JSON: %v", e.Group, err)
			}
		}
	}
	if e := status["broken__cut"]; e.Status != "analysed" || len(e.InputErrors) != 1 {
		t.Errorf("a truncated capture is analysed up to the damage and says so: %+v", e)
	}
	if e := status["broken__bogus"]; e.Status != "failed" || e.Error == "" {
		t.Errorf("an unreadable capture is a failed group with its error: %+v", e)
	}
	if e := status["rotated__dump"]; e.Status != "analysed" || e.Conversations != 2 {
		t.Errorf("the rotated capture is one group with the original's 2 conversations: %+v", e)
	}
	failed := 0
	for _, e := range entries {
		if e.Status == "failed" {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d failed groups, want 1", failed)
	}

	// A second run skips every group that was analysed and whose inputs did
	// not change; the failed one is tried again.
	again, err := Run(context.Background(), groups, Options{Out: out, Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range again {
		want := "unchanged"
		if e.Group == "broken__bogus" {
			want = "failed"
		}
		if e.Status != want {
			t.Errorf("rerun: %s is %s, want %s", e.Group, e.Status, want)
		}
	}

	// Two shards into one directory, then a merge, give the same index.
	sharded := t.TempDir()
	for k := 1; k <= 2; k++ {
		if _, err := Run(context.Background(), groups, Options{Out: sharded, Shard: k, Shards: 2}); err != nil {
			t.Fatal(err)
		}
	}
	merged, err := Merge(sharded)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := Merge(out)
	if len(merged) != len(full) {
		t.Fatalf("merged shards have %d groups, the single run %d", len(merged), len(full))
	}
	names := func(es []Entry) []string {
		var n []string
		for _, e := range es {
			n = append(n, e.Group+"/"+e.Status)
		}
		sort.Strings(n)
		return n
	}
	if a, b := names(merged), names(full); !equal(a, b) {
		t.Errorf("shards merged to %v, single run %v", a, b)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStemGroupsRotationNames(t *testing.T) {
	tests := map[string]string{
		"dump.pcap":                    "dump",
		"dump.pcap1":                   "dump",
		"dump.pcap12":                  "dump",
		"dump-0001.pcap":               "dump",
		"dump_20261122_100000.pcap.gz": "dump",
		"web1.pcapng.zst":              "web1",
		"trace.pcap":                   "trace",
	}
	for in, want := range tests {
		if got := stem(in); got != want {
			t.Errorf("stem(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShardsPartitionGroups(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		counts := 0
		for i := 0; i < 100; i++ {
			name := "group" + string(rune('a'+i%26)) + string(rune('0'+i/26))
			owners := 0
			for k := 1; k <= n; k++ {
				if InShard(name, k, n) {
					owners++
				}
			}
			if owners != 1 {
				t.Fatalf("%s has %d owners among %d shards", name, owners, n)
			}
			counts++
		}
	}
}

// TestPartialGroupIsRunAgain: a group whose analysis stopped before its
// capture's end (the memory limit, Ctrl-C) is recorded as partial with
// the reason, and the next run analyses it again rather than skipping it
// as unchanged; once whole, it is skipped.
func TestPartialGroupIsRunAgain(t *testing.T) {
	seeds, err := scale.Load(filepath.Join(testenv.RepoRoot(), "testdata", "captures", "tcp-clean", "capture.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	capture := filepath.Join(t.TempDir(), "big.pcap")
	if _, err := scale.Write(capture, seeds, scale.Options{Size: 4 << 20, Concurrent: 50}); err != nil {
		t.Fatal(err)
	}
	g := Group{Name: "big", Captures: []string{capture}}
	opts := Options{Out: t.TempDir()}
	stopped, stop := context.WithCancelCause(context.Background())
	why := errors.New("stopped at the memory limit: a test")
	stop(why)
	for _, tt := range []struct {
		ctx    context.Context
		status string
		err    string
	}{
		{stopped, "partial", why.Error()},
		{context.Background(), "analysed", ""},
		{context.Background(), "unchanged", ""},
	} {
		if e := runGroup(tt.ctx, g, opts); e.Status != tt.status || e.Error != tt.err {
			t.Errorf("status %q, error %q; want %q, %q", e.Status, e.Error, tt.status, tt.err)
		}
	}
}
