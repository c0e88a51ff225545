package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/gzip"

	"wiremortem/analysis"
	"wiremortem/flows"
	"wiremortem/internal/testenv"
)

var updateMalformed = flag.Bool("update-malformed", false, "regenerate the capture files in testdata/malformed")

const malformedDir = "../../testdata/malformed"

// expectation is one entry of testdata/malformed/expected.json: what
// `wiremortem flows --json FILE` must do with the file.
type expectation struct {
	// Outcome is "read-fully", "read-until" (a warning names the record
	// where reading stopped, what came before is analysed) or "error"
	// (nothing could be read).
	Outcome string `json:"outcome"`
	Exit    int    `json:"exit"`
	// Packets is how many packets must be read; -1 to not check.
	Packets int64 `json:"packets"`
	// Stderr lists strings the one-line error must contain.
	Stderr []string `json:"stderr,omitempty"`
	// Stats are packet accounting fields that must have these values.
	Stats map[string]int64 `json:"stats,omitempty"`
	// Anomaly names a conversation anomaly that must be counted.
	Anomaly string `json:"anomaly,omitempty"`
	Why     string `json:"why"`
}

// jsonDocument reads back what --json writes.
type jsonDocument struct {
	Summary       analysis.Summary      `json:"summary"`
	Conversations []*flows.Conversation `json:"conversations"`
}

// tcpFrame builds an Ethernet/IPv4/TCP frame with gopacket, then lets the
// caller corrupt the bytes.
func tcpFrame(t testing.TB, syn bool, opts []layers.TCPOption, payload []byte, mangle func([]byte)) []byte {
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 5}, DstMAC: []byte{2, 0, 0, 0, 0, 9}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{10, 0, 0, 5}, DstIP: []byte{10, 0, 0, 9}}
	tcp := &layers.TCP{SrcPort: 46407, DstPort: 9501, Seq: 1000, SYN: syn, ACK: !syn, Window: 65535, Options: opts}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	if mangle != nil {
		mangle(b)
	}
	return b
}

// pcapOf writes frames into a little-endian microsecond pcap.
func pcapOf(t testing.TB, snaplen uint32, lt layers.LinkType, frames ...[]byte) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(snaplen, lt); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// malformedFiles builds every file of the malformed corpus. Offsets in the
// comments are for a reader checking the expectations by hand.
func malformedFiles(t testing.TB) map[string][]byte {
	syn := tcpFrame(t, true, nil, nil, nil)
	data := tcpFrame(t, false, nil, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), nil)
	good := pcapOf(t, 65535, layers.LinkTypeEthernet, syn, data, data)
	files := map[string][]byte{}
	files["good.pcap"] = good
	// Record 1 starts at 24, record 2 at 24+16+len(syn), record 3 after it.
	rec3 := 24 + 2*16 + len(syn) + len(data)
	files["truncated-mid-record.pcap"] = good[:rec3+16+10]
	files["truncated-mid-header.pcap"] = good[:rec3+7]
	files["bogus-magic.pcap"] = append([]byte("\x89PNG\r\n\x1a\n"), good[8:]...)
	files["empty.pcap"] = []byte{}
	files["snaplen-0.pcap"] = pcapOf(t, 0, layers.LinkTypeEthernet, syn, data)
	files["snaplen-max.pcap"] = pcapOf(t, 0xffffffff, layers.LinkTypeEthernet, syn, data)
	longer := pcapOf(t, 64, layers.LinkTypeEthernet, syn, data) // data record is longer than snaplen 64
	files["record-longer-than-snaplen.pcap"] = longer
	huge := pcapOf(t, 1<<30, layers.LinkTypeEthernet, syn, data)
	binary.LittleEndian.PutUint32(huge[24+16+len(syn)+8:], 3<<30) // record 2 claims a 3 GB capture length
	binary.LittleEndian.PutUint32(huge[24+16+len(syn)+12:], 3<<30)
	files["record-length-3GB.pcap"] = huge
	ts := pcapOf(t, 65535, layers.LinkTypeEthernet, syn, data)
	binary.LittleEndian.PutUint32(ts[24:], 0xffffffff)            // year 2106
	binary.LittleEndian.PutUint32(ts[24+16+len(syn):], 0)         // 1970
	binary.LittleEndian.PutUint32(ts[24+16+len(syn)+4:], 3999999) // microseconds over a second
	files["odd-timestamps.pcap"] = ts
	files["unknown-link-type.pcap"] = pcapOf(t, 65535, layers.LinkType(147), syn, data)
	files["ipv4-ihl-below-20.pcap"] = pcapOf(t, 65535, layers.LinkTypeEthernet, tcpFrame(t, true, nil, nil, func(b []byte) { b[14] = 0x44 }))
	files["tcp-data-offset-below-5.pcap"] = pcapOf(t, 65535, layers.LinkTypeEthernet, tcpFrame(t, true, nil, nil, func(b []byte) { b[34+12] = 0x30 }))
	files["tcp-data-offset-past-packet.pcap"] = pcapOf(t, 65535, layers.LinkTypeEthernet, tcpFrame(t, true, nil, nil, func(b []byte) { b[34+12] = 0xf0 }))
	files["window-scale-over-14.pcap"] = pcapOf(t, 65535, layers.LinkTypeEthernet,
		tcpFrame(t, true, []layers.TCPOption{{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{20}}}, nil, nil))
	var gzbuf bytes.Buffer
	zw := gzip.NewWriter(&gzbuf)
	zw.Write(good)
	zw.Close()
	files["gzip-trailing-garbage.pcap.gz"] = append(gzbuf.Bytes(), []byte("this is not gzip")...)
	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range [][]byte{syn, data, data} {
		nw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Date(2026, 11, 22, 10, 0, i, 0, time.UTC), CaptureLength: len(f), Length: len(f)}, f)
	}
	nw.Flush()
	ngb := ng.Bytes()
	// Corrupt the trailing total length of the last packet block.
	binary.LittleEndian.PutUint32(ngb[len(ngb)-4:], 12)
	files["pcapng-block-length-mismatch.pcapng"] = ngb
	// Byte errors sprinkled over a real-looking capture, the way
	// `editcap -E 0.02` damages one, but deterministic.
	flipped := append([]byte(nil), good...)
	for i := 60; i < len(flipped); i += 37 {
		flipped[i] ^= 0x5a
	}
	files["byte-errors.pcap"] = flipped
	return files
}

func TestMalformedCaptures(t *testing.T) {
	files := malformedFiles(t)
	if *updateMalformed {
		os.MkdirAll(malformedDir, 0o755)
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(malformedDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(malformedDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]expectation
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range files {
		names = append(names, name)
		if _, ok := expected[name]; !ok {
			t.Errorf("%s has no expectation in expected.json", name)
		}
	}
	names = append(names, "a-directory")
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want := expected[name]
			path := filepath.Join(malformedDir, name)
			if name != "a-directory" {
				onDisk, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(onDisk, files[name]) {
					t.Fatalf("%s differs from what the generator makes: run go test ./cmd/wiremortem -run TestMalformedCaptures -update-malformed", path)
				}
			} else {
				path = t.TempDir()
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"flows", "--json", path}, &stdout, &stderr)
			if code != want.Exit {
				t.Errorf("exit %d, want %d; stderr: %s", code, want.Exit, stderr.String())
			}
			msg := stderr.String()
			for _, s := range want.Stderr {
				if !strings.Contains(msg, s) {
					t.Errorf("stderr %q does not contain %q", msg, s)
				}
			}
			if want.Outcome != "read-fully" && strings.Count(strings.TrimSpace(msg), "\n") > 0 {
				t.Errorf("want one error line, got %q", msg)
			}
			var doc jsonDocument
			if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
				t.Fatalf("stdout is not the JSON document: %v", err)
			}
			p := doc.Summary.Packets
			if want.Packets >= 0 && p.Packets != want.Packets {
				t.Errorf("read %d packets, want %d", p.Packets, want.Packets)
			}
			if sum := p.TCP + p.NotTCP + p.Fragments + p.Malformed + p.UnsupportedLink; sum != p.Packets {
				t.Errorf("packet accounting does not add up: %+v", p)
			}
			statsJSON, _ := json.Marshal(p)
			var stats map[string]any
			json.Unmarshal(statsJSON, &stats)
			for k, v := range want.Stats {
				if got, _ := stats[k].(float64); int64(got) != v {
					t.Errorf("stats.%s = %v, want %d", k, stats[k], v)
				}
			}
			if want.Anomaly != "" {
				found := false
				for _, c := range doc.Conversations {
					found = found || c.Anomalies[want.Anomaly] > 0
				}
				if !found {
					t.Errorf("no conversation counts anomaly %q", want.Anomaly)
				}
			}
		})
	}
}

// TestPublicMalformedCaptures runs the crafted and truncated captures of
// Zeek's and tcpdump's test suites: never a panic, every packet accounted
// for, damage reported with file and record.
func TestPublicMalformedCaptures(t *testing.T) {
	var paths []string
	for _, g := range []string{"zeek/testing/btest/Traces/trunc/*", "tcpdump/tests/*.pcap"} {
		m, _ := filepath.Glob(filepath.Join(testenv.Corpus(t, "."), g))
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Fatal("no public malformed captures found")
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run([]string{"flows", "--json", path}, &stdout, &stderr)
			if code != exitOK && code != exitInputError {
				t.Fatalf("exit %d; stderr %s", code, stderr.String())
			}
			if code == exitInputError && !strings.Contains(stderr.String(), filepath.Base(path)) {
				t.Errorf("error does not name the file: %s", stderr.String())
			}
			var doc jsonDocument
			if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			p := doc.Summary.Packets
			if sum := p.TCP + p.NotTCP + p.Fragments + p.Malformed + p.UnsupportedLink; sum != p.Packets {
				t.Errorf("packet accounting does not add up: %+v", p)
			}
		})
	}
}
