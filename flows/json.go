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
	w.IntField(`{"id":`, int64(c.ID))
	w.Raw(`,"client":`)
	appendAddrPort(w, c.Client)
	w.Raw(`,"server":`)
	appendAddrPort(w, c.Server)
	w.StringField(`,"originator":`, c.Originator)
	w.TimeField(`,"start":`, c.Start)
	w.TimeField(`,"end":`, c.End)
	w.IntField(`,"duration_ns":`, int64(c.Duration))
	w.Raw(`,"first_packet":`)
	c.FirstPacket.AppendJSON(w)
	w.Raw(`,"last_packet":`)
	c.LastPacket.AppendJSON(w)
	w.StringField(`,"conn_state":`, c.ConnState)
	w.StringField(`,"history":`, c.History)
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
	w.StringField(`,"end_reason":`, c.EndReason)
	w.Raw(`,"key_packets":`)
	jsonappend.List(w, c.KeyPackets, (*KeyPacket).appendJSON)
	w.IntOmitZero(`,"key_packets_dropped":`, c.KeyPacketsDropped)
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
			w.IntField(`:`, c.Anomalies[k])
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
	w.IntField(`,"syn_count":`, h.SYNCount)
	w.IntField(`,"syn_retransmissions":`, h.SYNRetransmissions)
	w.IntOmitZero(`,"retry_of":`, int64(h.RetryOf))
	w.Raw(`,"syn_acks":`)
	jsonappend.List(w, h.SYNACKs, (*evidence.Stamp).AppendJSON)
	w.IntField(`,"syn_ack_count":`, h.SYNACKCount)
	h.ACK.AppendOptionalJSON(w, `,"ack":`)
	h.RefusedBy.AppendOptionalJSON(w, `,"refused_by":`)
	w.BoolField(`,"completed":`, h.Completed)
	w.IntOmitZero(`,"rtt_ns":`, int64(h.RTT))
	w.Raw(`}`)
}

func (t *Traffic) appendJSON(w *jsonappend.Writer) {
	w.IntField(`{"packets":`, t.Packets)
	w.IntField(`,"bytes":`, t.Bytes)
	w.IntField(`,"payload_bytes":`, t.PayloadBytes)
	w.IntField(`,"ip_bytes":`, t.IPBytes)
	w.IntField(`,"missed_bytes":`, t.MissedBytes)
	t.Last.AppendOptionalJSON(w, `,"last":`)
	t.LastData.AppendOptionalJSON(w, `,"last_data":`)
	w.IntField(`,"syns":`, t.SYNs)
	w.IntField(`,"fins":`, t.FINs)
	w.IntField(`,"rsts":`, t.RSTs)
	w.IntField(`,"retransmissions":`, t.Retransmissions)
	w.IntField(`,"conflicting_retransmissions":`, t.ConflictingRetransmissions)
	w.IntField(`,"out_of_order":`, t.OutOfOrder)
	w.IntField(`,"duplicate_acks":`, t.DuplicateACKs)
	w.IntField(`,"keep_alives":`, t.KeepAlives)
	w.IntField(`,"zero_window_adverts":`, t.ZeroWindowAdverts)
	w.IntField(`,"zero_window_probes":`, t.ZeroWindowProbes)
	w.IntField(`,"window_full":`, t.WindowFull)
	w.IntField(`,"window_scale":`, int64(t.WindowScale))
	w.IntOmitZero(`,"mss":`, int64(t.MSS))
	if t.SACKPermitted {
		w.Raw(`,"sack_permitted":true`)
	}
	w.IntField(`,"min_window":`, t.MinWindow)
	w.IntField(`,"max_window":`, t.MaxWindow)
	w.Raw(`}`)
}

func (z *ZeroWindowEpisode) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{"receiver":`)
	z.Receiver.AppendJSON(w)
	w.Raw(`,"start":`)
	z.Start.AppendJSON(w)
	z.End.AppendOptionalJSON(w, `,"end":`)
	w.StringField(`,"ended_by":`, z.EndedBy)
	w.IntField(`,"duration_ns":`, int64(z.Duration))
	w.IntField(`,"adverts":`, z.Adverts)
	w.IntField(`,"probes":`, z.Probes)
	w.IntField(`,"bytes_waiting":`, z.BytesWaiting)
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
	w.IntField(`,"unacked":`, m.Unacked)
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
		w.IntField(`,"duration_ns":`, int64(h.Duration))
		w.BoolField(`,"open_at_end":`, h.OpenAtEnd)
		w.Raw(`}`)
	}
	w.Raw(`}`)
}

func (k *KeyPacket) appendJSON(w *jsonappend.Writer) {
	w.Raw(`{`)
	k.Stamp.AppendJSONFields(w)
	w.Raw(`,"from":`)
	k.From.AppendJSON(w)
	w.StringField(`,"flags":`, k.Flags)
	w.IntField(`,"seq":`, k.Seq)
	w.IntField(`,"ack":`, k.Ack)
	w.IntField(`,"len":`, int64(k.Len))
	w.IntField(`,"window":`, k.Window)
	w.StringField(`,"label":`, k.Label)
	w.Raw(`}`)
}

func (s *WindowSample) appendJSON(w *jsonappend.Writer) {
	w.TimeField(`{"time":`, s.Time)
	w.IntField(`,"window":`, s.Window)
	w.IntField(`,"in_flight":`, s.InFlight)
	w.Raw(`}`)
}
