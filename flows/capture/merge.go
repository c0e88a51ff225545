package capture

import (
	"container/heap"
	"errors"
	"io"
)

// Merger reads several capture files as one stream in timestamp order: the
// parts of a rotated capture (`tcpdump -C` or `-G`) become one capture, so a
// conversation that spans two parts is one conversation. Packets with equal
// timestamps keep the order of the files as given, and within one file the
// file's own order is kept even when its timestamps go backwards.
//
// A damaged file is read up to the damage, reported to the damage callback,
// and the merge goes on with the other files.
type Merger struct {
	readers  []*Reader
	pending  []Packet
	queue    mergeQueue
	refill   int // reader whose packet was handed out last, or -1
	onDamage func(*Error)
	started  []bool
	overlap  [2]string
}

// Merge reads readers as one time-ordered stream. onDamage, if not nil, is
// called once for each file that could only be read up to some record.
func Merge(readers []*Reader, onDamage func(*Error)) *Merger {
	m := &Merger{
		readers:  readers,
		pending:  make([]Packet, len(readers)),
		refill:   -1,
		onDamage: onDamage,
		started:  make([]bool, len(readers)),
	}
	m.queue.m = m
	for i := range readers {
		m.advance(i)
	}
	return m
}

// advance reads reader i's next packet into its pending slot and queues it.
func (m *Merger) advance(i int) {
	err := m.readers[i].Next(&m.pending[i])
	if err == nil {
		heap.Push(&m.queue, i)
		return
	}
	var ce *Error
	if errors.As(err, &ce) && m.onDamage != nil {
		m.onDamage(ce)
	}
}

// Next returns the earliest pending packet of all files, or io.EOF when every
// file is exhausted. p.Data stays valid until the next call.
func (m *Merger) Next(p *Packet) error {
	if m.refill >= 0 {
		m.advance(m.refill)
		m.refill = -1
	}
	if m.queue.Len() == 0 {
		return io.EOF
	}
	i := heap.Pop(&m.queue).(int)
	m.noteOverlap(i)
	*p = m.pending[i]
	m.refill = i
	return nil
}

// noteOverlap remembers the first time packets of two files interleave: that
// is not a rotated capture but two captures of the same time span (two
// interfaces, or two hosts), which the caller may want to say.
func (m *Merger) noteOverlap(i int) {
	m.started[i] = true
	if m.overlap[0] != "" {
		return
	}
	for _, j := range m.queue.idx {
		if j != i && m.started[j] {
			m.overlap = [2]string{m.readers[j].info.Path, m.readers[i].info.Path}
			return
		}
	}
}

// Overlap returns two files whose packets interleaved in time, if any did.
func (m *Merger) Overlap() (a, b string, ok bool) {
	return m.overlap[0], m.overlap[1], m.overlap[0] != ""
}

type mergeQueue struct {
	m   *Merger
	idx []int
}

func (q *mergeQueue) Len() int { return len(q.idx) }
func (q *mergeQueue) Less(a, b int) bool {
	ta, tb := q.m.pending[q.idx[a]].Time, q.m.pending[q.idx[b]].Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return q.idx[a] < q.idx[b]
}
func (q *mergeQueue) Swap(a, b int) { q.idx[a], q.idx[b] = q.idx[b], q.idx[a] }
func (q *mergeQueue) Push(x any)    { q.idx = append(q.idx, x.(int)) }
func (q *mergeQueue) Pop() any {
	n := len(q.idx) - 1
	x := q.idx[n]
	q.idx = q.idx[:n]
	return x
}
