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
func (s *rowSpool) eachRow(w io.Writer) error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	sort.Slice(s.index, func(i, j int) bool { return s.index[i].id < s.index[j].id })
	var buf []byte
	for _, e := range s.index {
		if cap(buf) < int(e.length) {
			buf = make([]byte, e.length)
		}
		buf = buf[:e.length]
		if _, err := s.f.ReadAt(buf, e.offset); err != nil {
			return fmt.Errorf("flows table spool: %w", err)
		}
		if _, err := fmt.Fprintf(w, "%-7d ", e.id); err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func (s *rowSpool) close() {
	if s != nil && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
