package capture

import (
	"encoding/binary"
	"fmt"
)

// blockChecker walks pcapng block framing as the bytes stream past, to catch
// what pcapgo does not check: a block whose trailing total length differs
// from its leading one (pcapng spec section 3.1; Wireshark rejects such
// files). It runs on bytes as they are read from the file, ahead of the
// packet reader, and remembers the first bad block.
type blockChecker struct {
	order  binary.ByteOrder
	offset int64 // stream offset of the next byte to see
	start  int64 // offset of the current block
	head   [12]byte
	nhead  int
	length uint32 // current block's leading total length
	skip   int64  // body bytes left before the trailer
	tail   [4]byte
	ntail  int
	bad    error
	badAt  int64
}

func (b *blockChecker) feed(p []byte) {
	for len(p) > 0 && b.bad == nil {
		switch {
		case b.nhead < 12:
			n := copy(b.head[b.nhead:], p)
			b.nhead += n
			b.offset += int64(n)
			p = p[n:]
			if b.nhead == 12 {
				b.startBlock()
			}
		case b.skip > 0:
			n := int64(len(p))
			if n > b.skip {
				n = b.skip
			}
			b.skip -= n
			b.offset += n
			p = p[n:]
		default:
			n := copy(b.tail[b.ntail:], p)
			b.ntail += n
			b.offset += int64(n)
			p = p[n:]
			if b.ntail == 4 {
				if trailer := b.order.Uint32(b.tail[:]); trailer != b.length {
					b.fail(fmt.Errorf("pcapng block at byte offset %d gives its total length as %d at its start but %d at its end", b.start, b.length, trailer))
				}
				b.nhead, b.ntail = 0, 0
			}
		}
	}
}

// startBlock reads the block type and total length once 12 bytes are in
// (12, because a section header's byte order follows its length).
func (b *blockChecker) startBlock() {
	b.start = b.offset - 12
	if binary.LittleEndian.Uint32(b.head[:4]) == 0x0a0d0d0a {
		switch binary.LittleEndian.Uint32(b.head[8:12]) {
		case 0x1a2b3c4d:
			b.order = binary.LittleEndian
		case 0x4d3c2b1a:
			b.order = binary.BigEndian
		default:
			b.fail(fmt.Errorf("pcapng section header at byte offset %d has an unknown byte-order magic", b.start))
			return
		}
	}
	if b.order == nil {
		b.fail(fmt.Errorf("pcapng data at byte offset %d comes before any section header", b.start))
		return
	}
	b.length = b.order.Uint32(b.head[4:8])
	if b.length < 12 || b.length%4 != 0 {
		b.fail(fmt.Errorf("pcapng block at byte offset %d has an impossible total length %d", b.start, b.length))
		return
	}
	// 8 bytes of header and 4 of trailer frame the body; 4 of the body
	// are already in head.
	b.skip = int64(b.length) - 16
}

func (b *blockChecker) fail(err error) {
	b.bad, b.badAt = err, b.start
}
