package flows

import (
	"encoding/binary"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"

	"wiremortem/flows/capture"
)

// A sharded run (Options.Shards > 1) splits the tracker's work across
// cores: the calling goroutine, the dispatcher, reads every packet, decodes
// it, counts it and sends each TCP packet to the shard its 4-tuple hashes
// to; each shard is a Tracker that follows its own conversations,
// reassembles and decodes their bytes. What one tracker decides from all
// packets at once, the dispatcher decides and tells the shards, so that the
// result does not depend on the number of shards:
//
//   - when to sweep idle and lingering conversations: a tick, with the
//     packet time of the TCP packet that made it due, goes to every shard
//     before that packet;
//   - which endpoints answered a SYN before a given packet (for a
//     conversation whose SYN was not captured): the listener log;
//   - conversation IDs: a shard names a conversation after the number of
//     its first packet, and Renumber turns those into 1, 2, ...;
//   - the peak of live conversations, from when each started and ended.

// shardBatchPackets and shardArena size the batches sent to a shard: big
// enough that the channel costs nothing per packet, small enough to stay in
// cache.
const (
	shardBatchPackets = 256
	shardArena        = 512 << 10
	shardQueue        = 4
)

// shardItem is one packet for a shard, with the capture's clock (the
// latest packet time so far), or a tick (sweep at now).
type shardItem struct {
	idx  int64
	tick bool
	now  time.Time
	p    capture.Packet
}

// shardBatch holds packets for one shard with their bytes copied into an
// arena: the reader's buffer is reused at the next packet.
type shardBatch struct {
	items []shardItem
	arena []byte
}

func newShardBatch() *shardBatch {
	return &shardBatch{items: make([]shardItem, 0, shardBatchPackets), arena: make([]byte, 0, shardArena)}
}

func (b *shardBatch) add(idx int64, now time.Time, p *capture.Packet) {
	if len(b.arena)+len(p.Data) > cap(b.arena) {
		// The earlier items keep the old arena alive until the batch is
		// done.
		b.arena = make([]byte, 0, max(shardArena, len(p.Data)))
	}
	start := len(b.arena)
	b.arena = append(b.arena, p.Data...)
	it := shardItem{idx: idx, now: now, p: *p}
	it.p.Data = b.arena[start:len(b.arena):len(b.arena)]
	b.items = append(b.items, it)
}

func (b *shardBatch) full() bool {
	return len(b.items) >= shardBatchPackets || len(b.arena) >= shardArena*3/4
}

// listenerLog records, for each endpoint seen answering a SYN, the number
// of the first packet in which it did. The dispatcher writes it before
// sending that packet on, and a shard asks only about endpoints as of the
// packet it is processing, so every answer is the one a single tracker
// would give, however far the shards lag.
type listenerLog struct {
	mu    sync.RWMutex
	first map[netip.AddrPort]int64
}

// add records a SYN-ACK from a in packet idx, if it is a's first. Only the
// dispatcher writes, so it may read without the lock.
func (l *listenerLog) add(a netip.AddrPort, idx int64) {
	if _, seen := l.first[a]; seen {
		return
	}
	l.mu.Lock()
	l.first[a] = idx
	l.mu.Unlock()
}

// before reports whether a answered a SYN in a packet before packet idx.
func (l *listenerLog) before(a netip.AddrPort, idx int64) bool {
	l.mu.RLock()
	first, ok := l.first[a]
	l.mu.RUnlock()
	return ok && first < idx
}

// convSpan is when a conversation lived, in packet numbers: started by
// packet start, finished while packet end was processed (before any
// conversation that packet starts), math.MaxInt64 when at the capture's end.
type convSpan struct{ start, end int64 }

// shardOf spreads 4-tuples over n shards: a fixed mix of the key's bytes,
// so that a run is the same every time.
func shardOf(k *connKey, n int) int {
	h := binary.LittleEndian.Uint64(k.a[:8]) ^ binary.LittleEndian.Uint64(k.a[8:])*0x9e3779b97f4a7c15
	h ^= binary.LittleEndian.Uint64(k.b[:8])*0xc2b2ae3d27d4eb4f ^ binary.LittleEndian.Uint64(k.b[8:])
	h ^= uint64(k.pa)<<32 | uint64(k.pb)
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return int(h % uint64(n))
}

// runSharded is Run with Options.Shards goroutines following
// conversations.
func (t *Tracker) runSharded(src PacketSource) error {
	n := t.opts.Shards
	log := &listenerLog{first: map[netip.AddrPort]int64{}}
	var mu sync.Mutex
	onDone := t.opts.OnDone
	shards := make([]*Tracker, n)
	for i := range shards {
		o := t.opts
		o.Shards = 1
		o.MaxConversations = max(1, (t.opts.MaxConversations+n-1)/n)
		o.MaxBufferedPagesTotal = max(1, (t.opts.MaxBufferedPagesTotal+n-1)/n)
		o.OnDone = func(c *Conversation, s Sink) {
			mu.Lock()
			defer mu.Unlock()
			onDone(c, s)
		}
		shards[i] = NewTracker(o)
		shards[i].sharded, shards[i].listenerLog = true, log
	}
	free := make(chan *shardBatch, n*(shardQueue+2))
	queues := make([]chan *shardBatch, n)
	var wg sync.WaitGroup
	for i, sh := range shards {
		queues[i] = make(chan *shardBatch, shardQueue)
		wg.Go(func() {
			for b := range queues[i] {
				for k := range b.items {
					sh.item(&b.items[k])
				}
				b.items, b.arena = b.items[:0], b.arena[:0]
				select {
				case free <- b:
				default:
				}
			}
			sh.Finish()
		})
	}
	get := func() *shardBatch {
		select {
		case b := <-free:
			return b
		default:
			return newShardBatch()
		}
	}
	batches := make([]*shardBatch, n)
	for i := range batches {
		batches[i] = get()
	}
	var p capture.Packet
	var err error
	for {
		if err = src.Next(&p); err != nil {
			break
		}
		t.idx++
		// The shard decodes the packet again: here only what routes it.
		src, dst, flags, ok := peekIPv4TCP(&p)
		if ok {
			t.count(kindTCP, &p)
		} else {
			if !t.count(t.dec.decode(&p, &t.seg), &p) {
				continue
			}
			src, dst, flags = t.seg.src, t.seg.dst, t.seg.flags
		}
		if t.sweepDue(&p) {
			for _, b := range batches {
				b.items = append(b.items, shardItem{idx: t.idx, tick: true, now: t.now})
			}
		}
		key := makeKey(src, dst)
		i := shardOf(&key, n)
		batches[i].add(t.idx, t.now, &p)
		if batches[i].full() {
			queues[i] <- batches[i]
			batches[i] = get()
		}
		if flags&(flagSYN|flagACK) == flagSYN|flagACK {
			log.add(src, t.idx)
		}
	}
	for i, q := range queues {
		q <- batches[i]
		close(q)
	}
	wg.Wait()
	var spans []convSpan
	for _, sh := range shards {
		s := &sh.stats
		t.stats.Conversations += s.Conversations
		t.stats.IdleFinished += s.IdleFinished
		t.stats.Evicted += s.Evicted
		t.stats.ReassemblyGaps += s.ReassemblyGaps
		t.stats.ReassemblyGapBytes += s.ReassemblyGapBytes
		t.stats.LateStreamBytes += s.LateStreamBytes
		spans = append(spans, sh.spans...)
	}
	t.stats.PeakLive = peakLive(spans)
	if err == io.EOF {
		return nil
	}
	return err
}

// peekIPv4TCP reads the endpoints and flags of the most common packet,
// Ethernet, IPv4 without options or fragmentation, TCP with its whole header
// captured, straight from its bytes; anything else (VLANs, IPv6, other
// link types, odd lengths) reports !ok and goes through the decoder. On
// every packet it accepts, it agrees with the decoder
// (TestPeekAgreesWithTheDecoder).
func peekIPv4TCP(p *capture.Packet) (src, dst netip.AddrPort, flags uint8, ok bool) {
	d := p.Data
	if p.LinkType != layers.LinkTypeEthernet || len(d) < 14+20+20 || d[12] != 0x08 || d[13] != 0x00 {
		return
	}
	ip := d[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ip[0]>>4 != 4 || ihl != 20 || ip[9] != 6 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 || total < ihl+20 || total > len(ip) {
		return
	}
	tcp := ip[ihl:total]
	if off := int(tcp[12]>>4) * 4; off < 20 || off > len(tcp) {
		return
	}
	src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(tcp[0:2]))
	dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(tcp[2:4]))
	return src, dst, tcp[13], true
}

// item processes one packet or tick on a shard.
func (t *Tracker) item(it *shardItem) {
	t.idx = it.idx
	if it.tick {
		t.now = it.now
		t.sweep()
		return
	}
	t.dec.decode(&it.p, &t.seg) // TCP: the dispatcher decoded it already
	// The capture's clock as one tracker has it at this packet: the
	// latest time of every packet so far, not only this shard's (they
	// differ when a capture's times go backwards).
	t.now = it.now
	t.track(&it.p)
}

// peakLive is the most conversations live at once, counted as one tracker
// counts them: after each conversation starts, those that finished in an
// earlier packet or earlier in the same one excluded.
func peakLive(spans []convSpan) int {
	starts := make([]int64, len(spans))
	ends := make([]int64, len(spans))
	for i, s := range spans {
		starts[i], ends[i] = s.start, s.end
	}
	slices.Sort(starts)
	slices.Sort(ends)
	peak, gone := 0, 0
	for i, s := range starts {
		for gone < len(ends) && ends[gone] <= s {
			gone++
		}
		peak = max(peak, i+1-gone)
	}
	return peak
}

// Renumber gives conversations followed by a sharded run the IDs a single
// tracker gives them: 1, 2, ... in the order of their first packets, and
// RetryOf to match. convs must be every conversation OnDone received; it is
// sorted by ID.
func Renumber(convs []*Conversation) {
	slices.SortFunc(convs, func(a, b *Conversation) int { return a.ID - b.ID })
	old := make([]int, len(convs))
	for i, c := range convs {
		old[i] = c.ID
	}
	for i, c := range convs {
		c.ID = i + 1
		if r := c.Handshake.RetryOf; r != 0 {
			if k, ok := slices.BinarySearch(old, r); ok {
				c.Handshake.RetryOf = k + 1
			}
		}
	}
}
