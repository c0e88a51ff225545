package flows

import (
	"maps"
	"net/netip"
	"slices"

	"wiremortem/evidence"
	"wiremortem/internal/jsonappend"
)

// AppendJSON appends c's JSON form, byte for byte what the document's
// encoder makes of the struct tags (jsonappend), several times faster:
// encoding by reflection was most of the cost of writing a document with
// many short conversations. Tests hold the two to the same bytes on every
// lab and corpus capture and on records with every field set.
func (c *Conversation) AppendJSON(w *jsonappend.Writer) {
	w.Raw(`{"id":`)
	w.Int(int64(c.ID))
	w.Raw(`,"client":`)
	appendAddrPort(w, c.Client)
	w.Raw(`,"server":`)
	appendAddrPort(w, c.Server)
	w.Raw(`,"originator":`)
	w.String(c.Originator)
	w.Raw(`,"start":`)
	w.Time(c.Start)
	w.Raw(`,"end":`)
	w.Time(c.End)
	w.Raw(`,"duration_ns":`)
	w.Int(int64(c.Duration))
	w.Raw(`,"first_packet":`)
	c.FirstPacket.AppendJSON(w)
	w.Raw(`,"last_packet":`)
	c.LastPacket.AppendJSON(w)
	w.Raw(`,"conn_state":`)
	w.String(c.ConnState)
	w.Raw(`,"history":`)
	w.String(c.History)
	w.Raw(`,"handshake":`)
	c.Handshake.appendJSON(w)
	w.Raw(`,"from_client":`)
	c.FromClient.appendJSON(w)
	w.Raw(`,"from_server":`)
	c.FromServer.appendJSON(w)
	w.Raw(`,"zero_windows":`)
	jsonappend.List(w, c.ZeroWindows, (*ZeroWindowEpisode).appendJSON)
	w.Raw(`,"closing":`)
	c.Closing.appendJSON(w)
	w.Raw(`,"end_reason":`)
	w.String(c.EndReason)
	w.Raw(`,"key_packets":`)
	jsonappend.List(w, c.KeyPackets, (*KeyPacket).appendJSON)
	if c.KeyPacketsDropped != 0 {
		w.Raw(`,"key_packets_dropped":`)
		w.Int(c.KeyPacketsDropped)
	}
	w.Raw(`,"windows":{"client":`)
	jsonappend.List(w, c.Windows.Client, (*WindowSample).appendJSON)
	w.Raw(`,"server":`)
	jsonappend.List(w, c.Windows.Server, (*WindowSample).appendJSON)
	w.Raw(`}`)
	if len(c.Anomalies) > 0 {
		w.Raw(`,"anomalies":{`)
		for i, k := range slices.Sorted(maps.Keys(c.Anomalies)) {
			if i > 0 {
				w.Raw(`,`)
			}
			w.String(k)
			w.Raw(`:`)
			w.Int(c.Anomalies[k])
		}
		w.Raw(`}`)
	}
	w.Raw(`}`)
}

func appendAddrPort(w *jsonappend.Writer, p netip.AddrPort) {
	if p.Addr().Zone() != "" {
		w.String(p.String())
		return
	}
	w.Raw(`"`)
	w.B = p.AppendTo(w.B)
	w.Raw(`"`)
}

func (h *Handshake) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"syns":`)
	jsonappend.List(w, h.SYNs, (*evidence.Stamp).AppendJSON)
	w.Raw(`,"syn_count":`)
	w.Int(h.SYNCount)
	w.Raw(`,"syn_retransmissions":`)
	w.Int(h.SYNRetransmissions)
	if h.RetryOf != 0 {
		w.Raw(`,"retry_of":`)
		w.Int(int64(h.RetryOf))
	}
	w.Raw(`,"syn_acks":`)
	jsonappend.List(w, h.SYNACKs, (*evidence.Stamp).AppendJSON)
	w.Raw(`,"syn_ack_count":`)
	w.Int(h.SYNACKCount)
	h.ACK.AppendOptionalJSON(w, `,"ack":`)
	h.RefusedBy.AppendOptionalJSON(w, `,"refused_by":`)
	w.Raw(`,"completed":`)
	w.Bool(h.Completed)
	if h.RTT != 0 {
		w.Raw(`,"rtt_ns":`)
		w.Int(int64(h.RTT))
	}
	w.Raw(`}`)
}

func (t *Traffic) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"packets":`)
	w.Int(t.Packets)
	w.Raw(`,"bytes":`)
	w.Int(t.Bytes)
	w.Raw(`,"payload_bytes":`)
	w.Int(t.PayloadBytes)
	w.Raw(`,"ip_bytes":`)
	w.Int(t.IPBytes)
	w.Raw(`,"missed_bytes":`)
	w.Int(t.MissedBytes)
	t.Last.AppendOptionalJSON(w, `,"last":`)
	t.LastData.AppendOptionalJSON(w, `,"last_data":`)
	w.Raw(`,"syns":`)
	w.Int(t.SYNs)
	w.Raw(`,"fins":`)
	w.Int(t.FINs)
	w.Raw(`,"rsts":`)
	w.Int(t.RSTs)
	w.Raw(`,"retransmissions":`)
	w.Int(t.Retransmissions)
	w.Raw(`,"conflicting_retransmissions":`)
	w.Int(t.ConflictingRetransmissions)
	w.Raw(`,"out_of_order":`)
	w.Int(t.OutOfOrder)
	w.Raw(`,"duplicate_acks":`)
	w.Int(t.DuplicateACKs)
	w.Raw(`,"keep_alives":`)
	w.Int(t.KeepAlives)
	w.Raw(`,"zero_window_adverts":`)
	w.Int(t.ZeroWindowAdverts)
	w.Raw(`,"zero_window_probes":`)
	w.Int(t.ZeroWindowProbes)
	w.Raw(`,"window_full":`)
	w.Int(t.WindowFull)
	w.Raw(`,"window_scale":`)
	w.Int(int64(t.WindowScale))
	if t.MSS != 0 {
		w.Raw(`,"mss":`)
		w.Int(int64(t.MSS))
	}
	if t.SACKPermitted {
		w.Raw(`,"sack_permitted":true`)
	}
	w.Raw(`,"min_window":`)
	w.Int(t.MinWindow)
	w.Raw(`,"max_window":`)
	w.Int(t.MaxWindow)
	w.Raw(`}`)
}

func (z *ZeroWindowEpisode) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"receiver":`)
	z.Receiver.AppendJSON(w)
	w.Raw(`,"start":`)
	z.Start.AppendJSON(w)
	z.End.AppendOptionalJSON(w, `,"end":`)
	w.Raw(`,"ended_by":`)
	w.String(z.EndedBy)
	w.Raw(`,"duration_ns":`)
	w.Int(int64(z.Duration))
	w.Raw(`,"adverts":`)
	w.Int(z.Adverts)
	w.Raw(`,"probes":`)
	w.Int(z.Probes)
	w.Raw(`,"bytes_waiting":`)
	w.Int(z.BytesWaiting)
	w.Raw(`}`)
}

func appendCloseMark(w *jsonappend.Writer, m *CloseMark) {
	if m == nil {
		w.Raw(`null`)
		return
	}
	w.Raw(`{"by":`)
	m.By.AppendJSON(w)
	w.Raw(`,`)
	m.Stamp.AppendJSONFields(w)
	w.Raw(`,"unacked":`)
	w.Int(m.Unacked)
	if m.DuringZeroWindow {
		w.Raw(`,"during_zero_window":true`)
	}
	w.Raw(`}`)
}

func (c *Closing) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"fins":[`)
	appendCloseMark(w, c.FINs[0])
	w.Raw(`,`)
	appendCloseMark(w, c.FINs[1])
	w.Raw(`],"rsts":[`)
	appendCloseMark(w, c.RSTs[0])
	w.Raw(`,`)
	appendCloseMark(w, c.RSTs[1])
	w.Raw(`]`)
	if c.First != nil {
		w.Raw(`,"first":`)
		appendCloseMark(w, c.First)
	}
	if h := c.HalfClose; h != nil {
		w.Raw(`,"half_close":{"by":`)
		h.By.AppendJSON(w)
		w.Raw(`,"since":`)
		h.Since.AppendJSON(w)
		h.Acked.AppendOptionalJSON(w, `,"acked":`)
		h.PeerFIN.AppendOptionalJSON(w, `,"peer_fin":`)
		h.PeerRST.AppendOptionalJSON(w, `,"peer_rst":`)
		w.Raw(`,"duration_ns":`)
		w.Int(int64(h.Duration))
		w.Raw(`,"open_at_end":`)
		w.Bool(h.OpenAtEnd)
		w.Raw(`}`)
	}
	w.Raw(`}`)
}

func (k *KeyPacket) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{`)
	k.Stamp.AppendJSONFields(w)
	w.Raw(`,"from":`)
	k.From.AppendJSON(w)
	w.Raw(`,"flags":`)
	w.String(k.Flags)
	w.Raw(`,"seq":`)
	w.Int(k.Seq)
	w.Raw(`,"ack":`)
	w.Int(k.Ack)
	w.Raw(`,"len":`)
	w.Int(int64(k.Len))
	w.Raw(`,"window":`)
	w.Int(k.Window)
	w.Raw(`,"label":`)
	w.String(k.Label)
	w.Raw(`}`)
}

func (s *WindowSample) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"time":`)
	w.Time(s.Time)
	w.Raw(`,"window":`)
	w.Int(s.Window)
	w.Raw(`,"in_flight":`)
	w.Int(s.InFlight)
	w.Raw(`}`)
}
