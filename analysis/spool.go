package analysis

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
)

// rowSpool holds the flows table's lines on disk as conversations finish
// (Options.TableOnly), so the table of any capture costs the memory of
// the conversations live at once, and writes them back in ID order.
type rowSpool struct {
	f     *os.File
	w     *bufio.Writer
	size  int64
	index []spoolEntry
	err   error
}

type spoolEntry struct {
	id     int
	offset int64
	length int32
}

func newRowSpool() (*rowSpool, error) {
	f, err := os.CreateTemp("", "wiremortem-flows-*.txt")
	if err != nil {
		return nil, fmt.Errorf("flows table spool: %w", err)
	}
	// Unlinked at once: the file vanishes with the process even on a crash.
	os.Remove(f.Name())
	return &rowSpool{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (s *rowSpool) write(id int, row string) {
	if s.err != nil {
		return
	}
	if _, err := s.w.WriteString(row); err != nil {
		s.err = err
		return
	}
	s.index = append(s.index, spoolEntry{id: id, offset: s.size, length: int32(len(row))})
	s.size += int64(len(row))
}

// renumber gives the rows, written with a sharded run's provisional IDs,
// their final ones: 1, 2, ... in the same order (flows.Renumber).
func (s *rowSpool) renumber() {
	sort.Slice(s.index, func(i, j int) bool { return s.index[i].id < s.index[j].id })
	for i := range s.index {
		s.index[i].id = i + 1
	}
}

// eachRow writes every conversation's flows-table line, in ID order.
// Rows are in the file in the order conversations finished, which is
// close to their start order: they are read through a few cached blocks,
// not with a system call each.
func (s *rowSpool) eachRow(w io.Writer) error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	sort.Slice(s.index, func(i, j int) bool { return s.index[i].id < s.index[j].id })
	blocks := blockCache{f: s.f, size: s.size}
	for _, e := range s.index {
		row, err := blocks.read(e.offset, int(e.length))
		if err != nil {
			return fmt.Errorf("flows table spool: %w", err)
		}
		if err := writeRow(w, e.id, row); err != nil {
			return err
		}
	}
	return nil
}

// blockCache reads a file through its most recently used blocks.
type blockCache struct {
	f      *os.File
	size   int64
	blocks []cachedBlock // most recently used last
	spare  []byte
}

type cachedBlock struct {
	start int64
	data  []byte
}

const (
	spoolBlock  = 256 << 10
	spoolBlocks = 16
)

// read returns n bytes at off, valid until the next call.
func (c *blockCache) read(off int64, n int) ([]byte, error) {
	start := off - off%spoolBlock
	if off+int64(n) > start+spoolBlock {
		// Across two blocks (or longer than one): read it directly.
		if cap(c.spare) < n {
			c.spare = make([]byte, n)
		}
		_, err := c.f.ReadAt(c.spare[:n], off)
		return c.spare[:n], err
	}
	for i, b := range c.blocks {
		if b.start == start {
			copy(c.blocks[i:], c.blocks[i+1:])
			c.blocks[len(c.blocks)-1] = b
			return b.data[off-start : off-start+int64(n)], nil
		}
	}
	var data []byte
	if len(c.blocks) == spoolBlocks {
		data = c.blocks[0].data[:0]
		c.blocks = append(c.blocks[:0], c.blocks[1:]...)
	}
	size := min(spoolBlock, c.size-start)
	if int64(cap(data)) < size {
		data = make([]byte, size)
	}
	data = data[:size]
	if _, err := c.f.ReadAt(data, start); err != nil {
		return nil, err
	}
	c.blocks = append(c.blocks, cachedBlock{start: start, data: data})
	return data[off-start : off-start+int64(n)], nil
}

func (s *rowSpool) close() {
	if s != nil && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
