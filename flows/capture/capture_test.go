package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"wiremortem/internal/testenv"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)

// pcapFile builds a little-endian microsecond pcap with n packets of the
// given sizes, one millisecond apart.
func pcapFile(t *testing.T, sizes ...int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		data := bytes.Repeat([]byte{byte(i + 1)}, n)
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: n, Length: n}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readAll(t *testing.T, path string) ([]Packet, error) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Packet
	for {
		var p Packet
		err := r.Next(&p)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		p.Data = append([]byte(nil), p.Data...)
		out = append(out, p)
	}
}

func gz(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func zst(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func TestReadsEveryContainerAndCompression(t *testing.T) {
	plain := pcapFile(t, 60, 1514, 54)
	tests := []struct {
		name        string
		data        []byte
		compression Compression
	}{
		{"plain.pcap", plain, Uncompressed},
		{"misnamed.txt", plain, Uncompressed},
		{"c.pcap.gz", gz(t, plain), Gzip},
		{"c.pcap.zst", zst(t, plain), Zstd},
		{"gzip-named-zst.gz", zst(t, plain), Zstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, tt.name, tt.data)
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Info().Compression; got != tt.compression {
				t.Errorf("compression = %s, want %s", got, tt.compression)
			}
			r.Close()
			pkts, err := readAll(t, path)
			if err != nil {
				t.Fatal(err)
			}
			if len(pkts) != 3 || len(pkts[1].Data) != 1514 || pkts[2].Ref.Packet != 3 {
				t.Fatalf("got %d packets, want 3 with sizes 60,1514,54", len(pkts))
			}
			if !pkts[0].Time.Equal(t0) {
				t.Errorf("first packet time = %v, want %v", pkts[0].Time, t0)
			}
			if pkts[0].Ref.Source != path {
				t.Errorf("ref source = %q, want %q", pkts[0].Ref.Source, path)
			}
		})
	}
}

// bigEndianNano hand-builds a big-endian nanosecond pcap: pcapgo's writer
// only writes little endian, and both orders occur in the wild.
func bigEndianNano(ts time.Time, payload []byte) []byte {
	var b bytes.Buffer
	be := binary.BigEndian
	hdr := make([]byte, 24)
	be.PutUint32(hdr[0:], 0xa1b23c4d)
	be.PutUint16(hdr[4:], 2)
	be.PutUint16(hdr[6:], 4)
	be.PutUint32(hdr[16:], 262144)
	be.PutUint32(hdr[20:], uint32(layers.LinkTypeRaw))
	b.Write(hdr)
	rec := make([]byte, 16)
	be.PutUint32(rec[0:], uint32(ts.Unix()))
	be.PutUint32(rec[4:], uint32(ts.Nanosecond()))
	be.PutUint32(rec[8:], uint32(len(payload)))
	be.PutUint32(rec[12:], uint32(len(payload)))
	b.Write(rec)
	b.Write(payload)
	return b.Bytes()
}

func TestBigEndianNanosecond(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 987654321, time.UTC)
	pkts, err := readAll(t, write(t, "be.pcap", bigEndianNano(ts, []byte{0x45, 0, 0, 20})))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 || !pkts[0].Time.Equal(ts) || pkts[0].LinkType != layers.LinkTypeRaw {
		t.Fatalf("got %+v, want one raw packet at %v", pkts, ts)
	}
}

func TestPCAPNGWithTwoLinkTypes(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "lo", LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	any, err := w.AddInterface(pcapgo.NgInterface{Name: "any", LinkType: layers.LinkTypeLinuxSLL2, SnapLength: 262144, TimestampResolution: 6})
	if err != nil {
		t.Fatal(err)
	}
	w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: 60, Length: 60, InterfaceIndex: 0}, make([]byte, 60))
	w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(time.Second), CaptureLength: 40, Length: 100, InterfaceIndex: any}, make([]byte, 40))
	w.Flush()
	pkts, err := readAll(t, write(t, "mixed.pcapng", buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 {
		t.Fatalf("got %d packets, want 2: mixed link types must not drop packets", len(pkts))
	}
	if pkts[0].LinkType != layers.LinkTypeEthernet || pkts[1].LinkType != layers.LinkTypeLinuxSLL2 {
		t.Errorf("link types = %v, %v", pkts[0].LinkType, pkts[1].LinkType)
	}
	if !pkts[1].Truncated() || pkts[1].OrigLen != 100 {
		t.Errorf("second packet should be snaplen-cut 40 of 100, got %d of %d", len(pkts[1].Data), pkts[1].OrigLen)
	}
}

func TestDamagedFilesSayWhere(t *testing.T) {
	good := pcapFile(t, 100, 100, 100) // records start at 24, 140, 256; file is 372 bytes
	dir := t.TempDir()
	tests := []struct {
		name      string
		data      []byte
		path      string // when set, used instead of writing data
		readable  int    // packets read before the error
		wantInErr []string
	}{
		{name: "mid-record", data: good[:300], readable: 2, wantInErr: []string{"record 3", "byte offset 256", "truncated"}},
		{name: "mid-header", data: good[:260], readable: 2, wantInErr: []string{"record 3", "byte offset 256"}},
		{name: "right-after-record-header", data: good[:272], readable: 2, wantInErr: []string{"record 3", "truncated"}},
		{name: "empty", data: nil, wantInErr: []string{"file header", "empty file"}},
		{name: "short", data: good[:10], wantInErr: []string{"file header"}},
		{name: "bogus-magic", data: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantInErr: []string{"unknown magic 47 45 54 20"}},
		{name: "directory", path: dir, wantInErr: []string{"is a directory"}},
		{name: "gzip-truncated", data: func() []byte { z := gz(t, good); return z[:len(z)-12] }(), wantInErr: []string{"decompressed byte offset"}},
		{name: "gzip-trailing-garbage", data: append(gz(t, good), "garbage"...), readable: 3, wantInErr: []string{"record 4", "after the end of the compressed stream"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = write(t, tt.name, tt.data)
			}
			pkts, err := readAll(t, path)
			if err == nil {
				t.Fatalf("read %d packets and no error; want an error", len(pkts))
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, want *capture.Error", err, err)
			}
			if tt.name != "gzip-truncated" && len(pkts) != tt.readable {
				t.Errorf("read %d packets before the damage, want %d", len(pkts), tt.readable)
			}
			for _, w := range tt.wantInErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), path) {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestHugeSnaplenDoesNotAllocateUpFront(t *testing.T) {
	data := pcapFile(t, 64)
	binary.LittleEndian.PutUint32(data[16:], 0xffffffff)
	// A record claiming 3 GB that the file does not hold.
	rec := make([]byte, 16)
	binary.LittleEndian.PutUint32(rec[8:], 3<<30)
	binary.LittleEndian.PutUint32(rec[12:], 3<<30)
	data = append(data, rec...)
	data = append(data, make([]byte, 100)...)
	var before, after runtimeMem
	before.read()
	pkts, err := readAll(t, write(t, "huge.pcap", data))
	after.read()
	if len(pkts) != 1 || err == nil {
		t.Fatalf("got %d packets, err %v; want the good packet then a truncation error", len(pkts), err)
	}
	if grew := after.total - before.total; grew > 256<<20 {
		t.Errorf("reading a 200-byte file allocated %d MB", grew>>20)
	}
}

func TestMergeRotatedParts(t *testing.T) {
	var parts []string
	for i := 0; i < 3; i++ {
		var buf bytes.Buffer
		w := pcapgo.NewWriter(&buf)
		w.WriteFileHeader(65535, layers.LinkTypeEthernet)
		for j := 0; j < 2; j++ {
			ts := t0.Add(time.Duration(i*2+j) * time.Second)
			w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: 20, Length: 20}, make([]byte, 20))
		}
		parts = append(parts, write(t, "part"+string(rune('0'+i)), buf.Bytes()))
	}
	// Given out of order: the merge orders by time, not by argument order.
	var readers []*Reader
	for _, p := range []string{parts[2], parts[0], parts[1]} {
		r, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
	}
	m := Merge(readers, nil)
	var got []string
	var last time.Time
	for {
		var p Packet
		if err := m.Next(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Time.Before(last) {
			t.Fatalf("time went backwards at %v", p.Ref)
		}
		last = p.Time
		got = append(got, p.Ref.String())
	}
	want := []string{parts[0] + " #1", parts[0] + " #2", parts[1] + " #1", parts[1] + " #2", parts[2] + " #1", parts[2] + " #2"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("merge order\n got %v\nwant %v", got, want)
	}
	if _, _, ok := m.Overlap(); ok {
		t.Error("rotated parts reported as overlapping")
	}
}

func TestMergeGoesOnAfterDamage(t *testing.T) {
	good := write(t, "good.pcap", pcapFile(t, 60, 60))
	bad := write(t, "bad.pcap", pcapFile(t, 60, 60)[:150])
	var readers []*Reader
	for _, p := range []string{bad, good} {
		r, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
	}
	var damage []*Error
	m := Merge(readers, func(e *Error) { damage = append(damage, e) })
	n := 0
	for {
		var p Packet
		if err := m.Next(&p); err == io.EOF {
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("read %d packets, want 3 (1 from the damaged file, 2 from the good one)", n)
	}
	if len(damage) != 1 || damage[0].File != bad || damage[0].Record != 2 {
		t.Errorf("damage = %v, want one report for %s record 2", damage, bad)
	}
}

func TestMergeReportsOverlap(t *testing.T) {
	a := write(t, "a.pcap", pcapFile(t, 60, 60, 60))
	b := write(t, "b.pcap", pcapFile(t, 60, 60))
	var readers []*Reader
	for _, p := range []string{a, b} {
		r, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
	}
	m := Merge(readers, nil)
	n := 0
	for m.Next(&Packet{}) == nil {
		n++
	}
	x, y, ok := m.Overlap()
	if n != 5 || !ok || x != a || y != b {
		t.Errorf("read %d packets, overlap %q %q %v; want 5 and %s overlapping %s", n, x, y, ok, a, b)
	}
}

func TestPublicCorpusCaptures(t *testing.T) {
	tests := []struct {
		rel     string
		packets int
		format  Format
		comp    Compression
	}{
		{"tcpdump/tests/tcp-handshake-nano.pcap", 3, PCAP, Uncompressed},
		{"zeek/testing/btest/Traces/http/iso-download.pcap.gz", 289, PCAP, Gzip},
		{"zeek/testing/btest/Traces/tcp/http-on-irc-port-missing-syn.pcapng", 13, PCAPNG, Uncompressed},
		{"tcpdump/tests/quic_handshake_truncated.pcap", 18, PCAP, Uncompressed},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.rel), func(t *testing.T) {
			path := testenv.Corpus(t, tt.rel)
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			info := r.Info()
			r.Close()
			if info.Format != tt.format || info.Compression != tt.comp {
				t.Errorf("format %s/%s, want %s/%s", info.Format, info.Compression, tt.format, tt.comp)
			}
			pkts, err := readAll(t, path)
			if err != nil {
				t.Fatal(err)
			}
			if len(pkts) != tt.packets {
				t.Errorf("read %d packets, want %d (the corpus README's tshark count)", len(pkts), tt.packets)
			}
		})
	}
}
