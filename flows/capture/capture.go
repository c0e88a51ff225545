// Package capture reads packet capture files: pcap (microsecond and
// nanosecond, either byte order) and pcapng (several interfaces, link types
// and timestamp resolutions), plain, gzip or zstd compressed. The format is
// chosen by the file's magic bytes, never by its name.
//
// A damaged file is read up to the damage; the error names the file, the
// record being read and the byte offset where it starts, so a person can look
// at the same place with a hex editor or `editcap`.
package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"wiremortem/evidence"
)

// Packet is one record of a capture file.
type Packet struct {
	// Data is the captured bytes. It stays valid only until the next call to
	// Next on the same reader: readers reuse one buffer.
	Data []byte
	Time time.Time
	// OrigLen is the packet's length on the wire; it exceeds len(Data) when the
	// capture's snap length cut the packet.
	OrigLen  int
	LinkType layers.LinkType
	// Ref names the file and the 1-based record number: the packet number
	// Wireshark shows for that file.
	Ref evidence.Ref
}

// Truncated reports whether the snap length cut this packet.
func (p *Packet) Truncated() bool { return len(p.Data) < p.OrigLen }

// Format is the container format of a capture file.
type Format string

// Container formats.
const (
	PCAP   Format = "pcap"
	PCAPNG Format = "pcapng"
)

// Compression is how a capture file was compressed.
type Compression string

// Compressions detected by magic bytes.
const (
	Uncompressed Compression = "none"
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
)

// Error is a capture file that could not be read, or could be read only up to
// some record.
type Error struct {
	File string
	// Record is the 1-based number of the record that could not be read; 0
	// when the file header itself is bad.
	Record int64
	// Offset is the byte offset where that record starts, counted in the
	// decompressed stream when the file is compressed.
	Offset int64
	// Compressed is set when Offset counts decompressed bytes.
	Compressed bool
	Err        error
}

func (e *Error) Error() string {
	where := "file header"
	if e.Record > 0 {
		where = fmt.Sprintf("record %d", e.Record)
	}
	unit := "byte offset"
	if e.Compressed {
		unit = "decompressed byte offset"
	}
	return fmt.Sprintf("%s: %s at %s %d: %v", e.File, where, unit, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTruncated is wrapped by errors for files that end inside a record.
var ErrTruncated = errors.New("file ends inside a record (truncated capture)")

// Info describes an open capture file.
type Info struct {
	Path        string      `json:"path"`
	Format      Format      `json:"format"`
	Compression Compression `json:"compression"`
	// LinkType is the first interface's link type; pcapng files can carry
	// several, and each Packet has its own.
	LinkType string `json:"link_type"`
	Snaplen  uint32 `json:"snaplen"`
}

// Reader reads the packets of one capture file in file order.
type Reader struct {
	info    Info
	closers []io.Closer
	counter *countingReader
	buf     *bufio.Reader
	pcap    *pcapgo.Reader
	ng      *pcapgo.NgReader
	records int64
	done    bool
}

// bufferSize is larger than bufio's default so that pcapgo, which wraps its
// input in bufio.NewReader, takes our reader as it is (bufio returns a
// *bufio.Reader of at least the default size unchanged). That is what lets us
// compute exact byte offsets: consumed = read from below - still buffered.
const bufferSize = 256 << 10

// Open opens a capture file; "-" reads standard input.
func Open(path string) (*Reader, error) {
	var src io.Reader
	r := &Reader{info: Info{Path: path}}
	if path == "-" {
		src = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, &Error{File: path, Err: err}
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, &Error{File: path, Err: err}
		}
		if st.IsDir() {
			f.Close()
			return nil, &Error{File: path, Err: errors.New("is a directory, not a capture file")}
		}
		r.closers = append(r.closers, f)
		src = f
	}
	if err := r.open(src); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// NewReader reads a capture from an already open stream; name is used in
// evidence references and errors.
func NewReader(name string, src io.Reader) (*Reader, error) {
	r := &Reader{info: Info{Path: name}}
	if err := r.open(src); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

var (
	magicGzip   = []byte{0x1f, 0x8b}
	magicZstd   = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicPCAPNG = []byte{0x0a, 0x0d, 0x0d, 0x0a}
)

func (r *Reader) open(src io.Reader) error {
	r.info.Compression = Uncompressed
	raw := bufio.NewReaderSize(src, 64<<10)
	head, err := raw.Peek(4)
	if len(head) == 0 {
		if err == nil || err == io.EOF {
			err = errors.New("empty file")
		}
		return r.headerError(err)
	}
	var decompressed io.Reader = raw
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return r.headerError(fmt.Errorf("gzip: %w", err))
		}
		// One capture per file: trailing bytes after the first gzip member
		// are reported as damage rather than parsed as another member.
		zr.Multistream(false)
		r.info.Compression = Gzip
		r.closers = append(r.closers, zr)
		decompressed = &gzipTail{zr: zr, rest: raw}
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return r.headerError(fmt.Errorf("zstd: %w", err))
		}
		r.info.Compression = Zstd
		r.closers = append(r.closers, zr.IOReadCloser())
		decompressed = zr
	}
	r.counter = &countingReader{r: decompressed}
	r.buf = bufio.NewReaderSize(r.counter, bufferSize)
	head, err = r.buf.Peek(4)
	if len(head) < 4 {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("only %d bytes: too short for a capture file header", len(head))
		}
		return r.headerError(err)
	}
	switch {
	case bytes.Equal(head, magicPCAPNG):
		r.info.Format = PCAPNG
		// The checker sees bytes from here on; the 4 peeked are already
		// buffered, so prime it with them.
		r.counter.check = &blockChecker{}
		r.counter.check.feed(head)
		if buffered, _ := r.buf.Peek(r.buf.Buffered()); len(buffered) > 4 {
			r.counter.check.feed(buffered[4:])
		}
		ng, err := pcapgo.NewNgReader(r.buf, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return r.headerError(fmt.Errorf("pcapng: %w", err))
		}
		r.ng = ng
		if ng.NInterfaces() > 0 {
			iface, _ := ng.Interface(0)
			r.info.LinkType = iface.LinkType.String()
			r.info.Snaplen = iface.SnapLength
		}
	case isPCAPMagic(head):
		r.info.Format = PCAP
		pr, err := pcapgo.NewReader(r.buf)
		if err != nil {
			return r.headerError(fmt.Errorf("pcap: %w", err))
		}
		r.pcap = pr
		r.info.LinkType = pr.LinkType().String()
		r.info.Snaplen = pr.Snaplen()
	default:
		return r.headerError(fmt.Errorf("unknown magic % x: not a pcap or pcapng file (gzip and zstd are also accepted)", head))
	}
	return nil
}

// Sniff reports whether b, the first bytes of a file, start a capture this
// package reads: pcap, pcapng, or gzip or zstd (checked when opened).
func Sniff(b []byte) bool {
	return isPCAPMagic(b) || bytes.HasPrefix(b, magicPCAPNG) || bytes.HasPrefix(b, magicGzip) || bytes.HasPrefix(b, magicZstd)
}

func isPCAPMagic(b []byte) bool {
	if len(b) > 4 {
		b = b[:4]
	}
	switch string(b) {
	case "\xd4\xc3\xb2\xa1", "\xa1\xb2\xc3\xd4", // microseconds, little and big endian
		"\x4d\x3c\xb2\xa1", "\xa1\xb2\x3c\x4d": // nanoseconds
		return true
	}
	return false
}

func (r *Reader) headerError(err error) error {
	return &Error{File: r.info.Path, Err: err, Compressed: r.info.Compression != Uncompressed}
}

// Info describes the file.
func (r *Reader) Info() Info { return r.info }

// Records is how many packets were read so far.
func (r *Reader) Records() int64 { return r.records }

// offset is how many bytes of the (decompressed) stream the packet reader
// consumed.
func (r *Reader) offset() int64 { return r.counter.n - int64(r.buf.Buffered()) }

// Next reads the next packet into p. It returns io.EOF at the clean end of the
// file and an *Error when the file is damaged; after either, the reader stays
// at the end.
func (r *Reader) Next(p *Packet) error {
	if r.done {
		return io.EOF
	}
	start := r.offset()
	if c := r.counter.check; c != nil && c.bad != nil && c.badAt < start {
		// A block before this point was damaged; what it framed was
		// read, nothing after it can be trusted.
		r.done = true
		return &Error{File: r.info.Path, Record: r.records + 1, Offset: c.badAt, Compressed: r.info.Compression != Uncompressed, Err: c.bad}
	}
	var (
		data []byte
		ci   gopacket.CaptureInfo
		err  error
	)
	p.LinkType = 0
	if r.pcap != nil {
		data, ci, err = r.pcap.ZeroCopyReadPacketData()
		p.LinkType = r.pcap.LinkType()
	} else {
		data, ci, err = r.ng.ZeroCopyReadPacketData()
		if len(ci.AncillaryData) > 0 {
			p.LinkType, _ = ci.AncillaryData[0].(layers.LinkType)
		}
	}
	if err != nil {
		r.done = true
		if err == io.EOF && r.offset() == start {
			return io.EOF
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = ErrTruncated
		}
		return &Error{File: r.info.Path, Record: r.records + 1, Offset: start, Compressed: r.info.Compression != Uncompressed, Err: err}
	}
	r.records++
	p.Data = data
	p.Time, p.OrigLen = ci.Timestamp, ci.Length
	if p.OrigLen < len(data) {
		// Writers that pad records report the original length as smaller
		// than what they stored; trust the bytes we hold.
		p.OrigLen = len(data)
	}
	p.Ref = evidence.Ref{Source: r.info.Path, Packet: r.records}
	return nil
}

// Close releases the file.
func (r *Reader) Close() error {
	var first error
	for i := len(r.closers) - 1; i >= 0; i-- {
		if err := r.closers[i].Close(); err != nil && first == nil && !errors.Is(err, fs.ErrClosed) {
			first = err
		}
	}
	r.closers = nil
	return first
}

type countingReader struct {
	r     io.Reader
	n     int64
	check *blockChecker // pcapng framing check, nil for pcap
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.check != nil {
		c.check.feed(p[:n])
	}
	return n, err
}

// gzipTail reads one gzip member and then checks that nothing but zero
// padding follows it: `gzip` output concatenated with garbage (a disk that
// filled up mid-rotation, a botched copy) is reported, not silently ignored.
type gzipTail struct {
	zr   *gzip.Reader
	rest io.Reader
}

func (g *gzipTail) Read(p []byte) (int, error) {
	n, err := g.zr.Read(p)
	if err != io.EOF {
		return n, err
	}
	var tail [512]byte
	for {
		m, rerr := g.rest.Read(tail[:])
		for _, b := range tail[:m] {
			if b != 0 {
				return n, errors.New("gzip: unexpected bytes after the end of the compressed stream")
			}
		}
		if rerr == io.EOF {
			return n, io.EOF
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
