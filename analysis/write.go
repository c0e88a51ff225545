package analysis

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"sync"

	"wiremortem/decoders/http"
	"wiremortem/flows"
	"wiremortem/internal/jsonappend"
)

// errNotKept is what writing the conversations fails with after a run
// that did not keep them (Options.NoConversationJSON), or after Close.
var errNotKept = errors.New("the conversations were not kept (analysis run with NoConversationJSON, or its result closed)")

// WriteJSON writes the full JSON document (docs/json.md): the Document's
// fields with every conversation, encoded as it is written, in ID order.
func (r *Result) WriteJSON(w io.Writer) error {
	if !r.keptConversations {
		return errNotKept
	}
	d := r.Document
	parts := []struct {
		key   string
		value any
	}{
		{"tool", d.Tool},
		{"inputs", d.Inputs},
		{"summary", d.Summary},
		{"incidents", d.Incidents},
		{"incidents_omitted", d.IncidentsOmitted},
		{"conversations", nil},
		{"timeline", d.Timeline},
		{"timeline_omitted", d.TimelineOmitted},
		{"rates", d.Rates},
		{"warnings", d.Warnings},
	}
	// Buffered: the conversations are two writes each, and w is often
	// a file (a system call per write).
	buf := bufio.NewWriterSize(w, 1<<20)
	bw := &errWriter{w: buf}
	bw.str("{")
	for i, p := range parts {
		if i > 0 {
			bw.str(",")
		}
		bw.str("\n  \"" + p.key + "\": ")
		if p.key == "conversations" {
			bw.str("[")
			if len(r.convs) > 0 {
				if bw.err == nil {
					bw.err = writeConversations(buf, r.convs, r.decoded)
				}
				bw.str("\n  ")
			}
			bw.str("]")
			continue
		}
		b, err := json.Marshal(p.value)
		if err != nil {
			return err
		}
		var ind bytes.Buffer
		json.Indent(&ind, b, "  ", "  ")
		bw.write(ind.Bytes())
	}
	bw.str("\n}\n")
	if bw.err != nil {
		return bw.err
	}
	return buf.Flush()
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) write(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *errWriter) str(s string) { e.write([]byte(s)) }

// encodeBatch is how many conversations are encoded at once: enough to
// keep every core busy, few enough that their bytes stay small.
const encodeBatch = 512

// batchBytes is about how many bytes of JSON a batch holds at most: a
// batch is written while the next is encoded, so writing the list holds
// about twice this, whatever the conversations' sizes (512 long
// conversations, each with 256 window samples a side, are 28 MB; short
// HTTP ones, 2.5 MB). Measured on 2 GB of long conversations stopped at
// a 150 MiB limit: the live heap's peak 91-93 -> 89-90 MiB, small next to
// what the program needs beyond its heap (memguard's reserve).
const batchBytes = 4 << 20

// writeConversations writes the conversations, in ID order, as the
// elements of a JSON array indented to sit inside the document. JSON
// encoding is most of the cost of a conversation that says little, so
// each batch is encoded on every core and written in order: the bytes are
// the same whatever the number of cores. A batch is written while the
// next is encoded (writing a big document is a system call per MiB and
// a second or more per GB).
func writeConversations(w io.Writer, convs []*flows.Conversation, decoded map[int]*http.Conversation) error {
	n := len(convs)
	workers := max(1, min(runtime.GOMAXPROCS(0), n/encodeBatch+1))
	// Two sets of one buffer per place in the batch, one being written
	// while the other is filled, reused from batch to batch: Marshal
	// would return a fresh copy of every conversation's bytes.
	var sets [2][][]byte
	for i := range sets {
		sets[i] = make([][]byte, min(n, encodeBatch))
	}
	errs := make([]error, min(n, encodeBatch))
	written := make(chan error, 1)
	writing := false
	// The first batch is small: how big a conversation's JSON is (a few
	// KB for a short one, tens for a long one with its window samples) is
	// known once some are encoded.
	size := min(encodeBatch, 64)
	for start, k := 0, 0; start < n; k++ {
		batch := sets[k%2][:min(size, n-start)]
		var wg sync.WaitGroup
		for k := range workers {
			wg.Go(func() {
				for i := k; i < len(batch); i += workers {
					c := convs[start+i]
					batch[i], errs[i] = appendConversation(batch[i][:0], c, decoded[c.ID])
				}
			})
		}
		wg.Wait()
		if writing {
			if err := <-written; err != nil {
				return err
			}
		}
		for i := range batch {
			if errs[i] != nil {
				return errs[i]
			}
		}
		writing = true
		first := start == 0
		go func() { written <- writeBatch(w, batch, first) }()
		start += len(batch)
		total := 0
		for i := range batch {
			total += len(batch[i])
		}
		size = max(workers, min(encodeBatch, batchBytes*len(batch)/max(1, total)))
	}
	if writing {
		return <-written
	}
	return nil
}

// appendConversation appends a Conversation's JSON to b: the same bytes
// as the encoder's, several times faster (flows' and http's AppendJSON).
func appendConversation(b []byte, c *flows.Conversation, h *http.Conversation) ([]byte, error) {
	w := &jsonappend.Writer{B: b}
	c.AppendJSON(w)
	if h != nil {
		// The embedded record's fields, then "http".
		w.B = append(w.B[:len(w.B)-1], `,"http":`...)
		h.AppendJSON(w)
		w.Raw(`}`)
	}
	return w.B, w.Err
}

// writeBatch writes a batch of encoded conversations, each after its
// separator.
func writeBatch(w io.Writer, batch [][]byte, first bool) error {
	for i := range batch {
		sep := ",\n    "
		if first && i == 0 {
			sep = "\n    "
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		if _, err := w.Write(batch[i]); err != nil {
			return err
		}
	}
	return nil
}
