package analysis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"sync"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"wiremortem/flows"
)

// conversationSpool holds every finished conversation's JSON on disk, so
// memory stays bounded by live conversations however many a capture holds,
// and writes them back in ID order for the document.
type conversationSpool struct {
	f     *os.File
	w     *bufio.Writer
	size  int64
	index []spoolEntry
	// err is the first failure, or errNotEncoded after a run with
	// Options.NoConversationJSON.
	err error
}

// errNotEncoded is what writing the conversations fails with after a run
// that did not encode them.
var errNotEncoded = errors.New("the conversations were not encoded (analysis run with NoConversationJSON)")

type spoolEntry struct {
	id     int
	offset int64
	length int32
	// rowLength is the length of the flows-table line stored right after
	// the JSON.
	rowLength int32
}

func newSpool() (*conversationSpool, error) {
	f, err := os.CreateTemp("", "wiremortem-conversations-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("conversation spool: %w", err)
	}
	// Unlinked at once: the file vanishes with the process even on a crash.
	os.Remove(f.Name())
	return &conversationSpool{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// add appends one conversation.
func (s *conversationSpool) add(id int, c *Conversation) {
	if s.err != nil {
		return
	}
	b, err := jsonv1.Marshal(c)
	if err != nil {
		s.err = err
		return
	}
	s.write(id, b, flowRow(c))
}

// encoded is one conversation's JSON and flows-table line.
type encoded struct {
	json []byte
	row  string
	err  error
}

// spoolBatch is how many conversations are encoded at once: enough to
// keep every core busy, few enough that their bytes stay small.
const spoolBatch = 512

// addAll appends n conversations, conv(i) giving the i-th, encoding them
// on every core (JSON encoding is most of the cost of a conversation
// that says little) and writing them in order, so the file is the same
// whatever the number of cores.
func (s *conversationSpool) addAll(n int, conv func(i int) (id int, c *Conversation)) {
	workers := max(1, min(runtime.GOMAXPROCS(0), n/spoolBatch+1))
	out := make([]encoded, min(n, spoolBatch))
	for start := 0; start < n && s.err == nil; start += spoolBatch {
		batch := out[:min(spoolBatch, n-start)]
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(batch); i += workers {
					_, c := conv(start + i)
					b, err := jsonv1.Marshal(c)
					batch[i] = encoded{json: b, row: flowRow(c), err: err}
				}
			})
		}
		wg.Wait()
		for i, e := range batch {
			if e.err != nil {
				s.err = e.err
				return
			}
			id, _ := conv(start + i)
			s.write(id, e.json, e.row)
		}
	}
}

func (s *conversationSpool) write(id int, b []byte, row string) {
	if s.err != nil {
		return
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return
	}
	if _, err := s.w.WriteString(row); err != nil {
		s.err = err
		return
	}
	s.index = append(s.index, spoolEntry{id: id, offset: s.size, length: int32(len(b)), rowLength: int32(len(row))})
	s.size += int64(len(b) + len(row))
}

func (s *conversationSpool) len() int { return len(s.index) }

// renumber gives the conversations, written with a sharded run's
// provisional IDs, their final ones: 1, 2, ... in the same order
// (flows.Renumber).
func (s *conversationSpool) renumber() {
	sort.Slice(s.index, func(i, j int) bool { return s.index[i].id < s.index[j].id })
	for i := range s.index {
		s.index[i].id = i + 1
	}
}

// writeTo writes the conversations as the elements of a JSON array, in ID
// order, indented to sit inside the document.
func (s *conversationSpool) writeTo(w io.Writer) error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	sort.Slice(s.index, func(i, j int) bool { return s.index[i].id < s.index[j].id })
	var buf []byte
	for i, e := range s.index {
		if cap(buf) < int(e.length) {
			buf = make([]byte, e.length)
		}
		buf = buf[:e.length]
		if _, err := s.f.ReadAt(buf, e.offset); err != nil {
			return fmt.Errorf("conversation spool: %w", err)
		}
		sep := ",\n    "
		if i == 0 {
			sep = "\n    "
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// eachRow writes every conversation's flows-table line, in ID order.
func (s *conversationSpool) eachRow(w io.Writer) error {
	if s.err != nil {
		return s.err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	sort.Slice(s.index, func(i, j int) bool { return s.index[i].id < s.index[j].id })
	var buf []byte
	for _, e := range s.index {
		if cap(buf) < int(e.rowLength) {
			buf = make([]byte, e.rowLength)
		}
		buf = buf[:e.rowLength]
		if _, err := s.f.ReadAt(buf, e.offset+int64(e.length)); err != nil {
			return fmt.Errorf("conversation spool: %w", err)
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

// each decodes every conversation back, in ID order.
func (s *conversationSpool) each(fn func(*Conversation) error) error {
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
			return fmt.Errorf("conversation spool: %w", err)
		}
		c := &Conversation{Conversation: new(flows.Conversation)}
		if err := jsonv1.Unmarshal(buf, c); err != nil {
			return fmt.Errorf("conversation spool: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func (s *conversationSpool) close() {
	if s != nil && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
