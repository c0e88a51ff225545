package htmlreport

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
	"github.com/go-echarts/go-echarts/v2/types"

	"wiremortem/analysis"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/rules"
)

// chartsByRule adds, by rule id prefix, the charts that tell a rule's
// story beyond the ladder. Every incident gets the ladder of its first
// flow (or, without a conversation, its evidence on a time axis), so a new
// rule renders with no change here.
var chartsByRule = []struct {
	prefix string
	draw   func(b *builder, inc *rules.Incident) []*chart
}{
	{"zero-window", (*builder).windowCharts},
	{"syn-", (*builder).synCharts},
	{"close-wait", (*builder).halfClosedCharts},
}

func (b *builder) incidentCharts(inc *rules.Incident) []*chart {
	var out []*chart
	if c := b.ladder(inc); c != nil {
		out = append(out, c)
	}
	for _, m := range chartsByRule {
		if strings.HasPrefix(inc.Rule, m.prefix) {
			out = append(out, m.draw(b, inc)...)
			break
		}
	}
	return out
}

// conversationsOf returns the incident's conversations that the document
// lists, in flow order.
func (b *builder) conversationsOf(inc *rules.Incident) []*analysis.Conversation {
	var out []*analysis.Conversation
	for _, f := range inc.Flows {
		if c := b.transcriber.Conversation(f.Conversation); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// ladderRow is one row of a ladder diagram: a packet between the two
// endpoints or a log line.
type ladderRow struct {
	at     time.Time
	packet *flows.KeyPacket
	log    *evidence.Item
}

// arrow is a packet on the ladder: a line from the sender's column to the
// receiver's on the packet's row.
type arrow struct {
	Coords    [2][2]int       `json:"coords"`
	Name      string          `json:"name"`
	LineStyle *opts.LineStyle `json:"lineStyle"`
	Tip       tip             `json:"tip"`
}

// edgeAxis is a category axis whose ticks are on the grid's edges.
type edgeAxis struct {
	opts.XAxis
	BoundaryGap bool `json:"boundaryGap"`
}

// arrowSeries is a lines series with a symbol at each end.
type arrowSeries struct {
	charts.SingleSeries
	Symbol [2]string `json:"symbol"`
}

// namedPoint is a mark with a label beside it.
type namedPoint struct {
	Value [2]any `json:"value"`
	Name  string `json:"name"`
	Tip   tip    `json:"tip"`
}

// ladder draws the decisive packets of the incident's first conversation
// between its two endpoints, one row per packet as Wireshark's flow graph
// does, with the log lines the incident cites in a third column; times
// are relative to the first row.
func (b *builder) ladder(inc *rules.Incident) *chart {
	convs := b.conversationsOf(inc)
	if len(convs) == 0 {
		return b.evidenceChart(inc)
	}
	conv := convs[0]
	cited := map[evidence.Ref]bool{}
	var logs []evidence.Item
	const maxLogRows = 20
	for _, e := range inc.Evidence {
		cited[e.Ref] = true
		if e.Line > 0 && !e.Time.IsZero() && len(logs) < maxLogRows {
			logs = append(logs, e)
		}
	}
	packets, skipped := pickPackets(conv.KeyPackets, cited, b.opts.MaxLadderRows-len(logs))
	var rows []ladderRow
	for i := range packets {
		rows = append(rows, ladderRow{at: packets[i].Time, packet: &packets[i]})
	}
	for i := range logs {
		rows = append(rows, ladderRow{at: logs[i].Time, log: &logs[i]})
	}
	slices.SortStableFunc(rows, func(x, y ladderRow) int { return x.at.Compare(y.at) })
	if len(rows) == 0 {
		return nil
	}
	t0 := rows[0].at
	labels := make([]string, len(rows))
	var arrows []arrow
	var marks []namedPoint
	for i, r := range rows {
		rel := r.at.Sub(t0).Seconds()
		labels[i] = fmt.Sprintf("%+.6f s", rel)
		if p := r.packet; p != nil {
			arrows = append(arrows, packetArrow(conv, p, i, rel, cited[p.Ref]))
			continue
		}
		marks = append(marks, namedPoint{
			Value: [2]any{2, i}, Name: shorten(text(r.log.Ref.String()), 22),
			Tip: tip{Title: text(r.log.Ref.String()), Rows: [][2]string{
				{"time", formatTime(r.log.Time) + " UTC"},
				{"relative", fmt.Sprintf("%+.6f s", rel)},
				{"what", text(r.log.What)},
			}},
		})
	}
	columns := []string{"client " + conv.Client.String(), "server " + conv.Server.String()}
	right := "24"
	if len(marks) > 0 {
		columns = append(columns, "logs")
		right = "150"
	}
	s := charts.NewScatter()
	s.SetGlobalOptions(
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "item"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithXAxisOpts(opts.XAxis{
			Type: "category", Data: columns, Position: "top",
			AxisTick: &opts.AxisTick{Show: opts.Bool(false)},
			SplitLine: &opts.SplitLine{Show: opts.Bool(true), LineStyle: &opts.LineStyle{
				Color: "#90a4ae", Width: 2,
			}},
		}),
		charts.WithYAxisOpts(opts.YAxis{
			Type: "category", Data: labels, Inverse: opts.Bool(true),
			AxisLabel: &opts.AxisLabel{Interval: "0", FontFamily: "monospace"},
			AxisLine:  &opts.AxisLine{Show: opts.Bool(false)},
		}),
		charts.WithGridOpts(opts.Grid{Left: "8", Right: right, Top: "36", Bottom: "12", ContainLabel: opts.Bool(true)}),
	)
	s.MultiSeries = append(s.MultiSeries, charts.SingleSeries{
		Name: "packets", Type: "lines", CoordSystem: "cartesian2d", Data: arrows, SymbolSize: 9,
		Label: &opts.Label{
			Show: opts.Bool(true), Position: "middle", Formatter: "{b}", FontSize: 11, Color: "#263238",
			BackgroundColor: "#ffffff",
		},
	})
	if len(marks) > 0 {
		s.MultiSeries = append(s.MultiSeries, charts.SingleSeries{
			Name: "log lines", Type: types.ChartScatter, Data: marks, Symbol: "roundRect", SymbolSize: 10,
			ItemStyle: &opts.ItemStyle{Color: eventStyles[analysis.EventLogError].color},
			Label:     &opts.Label{Show: opts.Bool(true), Position: "right", Formatter: "{b}", FontSize: 11},
		})
	}
	c := b.newChart(fmt.Sprintf("Ladder of conversation %d: %s → %s", conv.ID, conv.Client, conv.Server), 60+26*len(rows), &s.BaseConfiguration)
	// Two options go-echarts does not model: the endpoints' columns sit on
	// the grid's edges, where the split lines are drawn, and each packet
	// ends in an arrowhead at its receiver.
	c.Option["xAxis"] = []edgeAxis{{XAxis: s.XAxisList[0], BoundaryGap: false}}
	series := []any{arrowSeries{SingleSeries: s.MultiSeries[0], Symbol: [2]string{"none", "arrow"}}}
	for _, other := range s.MultiSeries[1:] {
		series = append(series, other)
	}
	c.Option["series"] = series
	c.Note = fmt.Sprintf("Times relative to the first row, %s UTC.", formatTime(t0))
	if dropped := int64(skipped) + conv.KeyPacketsDropped; dropped > 0 {
		c.Note += fmt.Sprintf(" %s less telling packets are not drawn.", rules.Thousands(dropped))
	}
	if len(convs) > 1 || inc.FlowsOmitted > 0 {
		c.Note += fmt.Sprintf(" The incident has %s flows; this is the first.", rules.Thousands(int64(len(inc.Flows)+inc.FlowsOmitted)))
	}
	return c
}

// shorten cuts s to at most n runes, marking the cut with an ellipsis;
// the whole text is in the tooltip.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// pickPackets keeps at most limit key packets: those the incident cites,
// then the first and the last alternately (how it started, how it ended),
// in their original order. It returns how many it left out.
func pickPackets(kps []flows.KeyPacket, cited map[evidence.Ref]bool, limit int) ([]flows.KeyPacket, int) {
	limit = max(limit, 2)
	if len(kps) <= limit {
		return kps, 0
	}
	keep := make([]bool, len(kps))
	n := 0
	for i, kp := range kps {
		if cited[kp.Ref] && n < limit {
			keep[i] = true
			n++
		}
	}
	for lo, hi := 0, len(kps)-1; n < limit && lo <= hi; lo, hi = lo+1, hi-1 {
		for _, i := range []int{lo, hi} {
			if !keep[i] && n < limit {
				keep[i] = true
				n++
			}
		}
	}
	out := make([]flows.KeyPacket, 0, limit)
	for i, kp := range kps {
		if keep[i] {
			out = append(out, kp)
		}
	}
	return out, len(kps) - len(out)
}

// packetArrow draws one packet: its flags, payload length and why it
// matters above the arrow, everything else in the tooltip. Resets are red,
// SYNs green, FINs blue, zero windows orange; cited packets are thicker.
func packetArrow(conv *analysis.Conversation, p *flows.KeyPacket, row int, rel float64, cited bool) arrow {
	from, to := int(p.From), int(p.From.Other())
	name := text(p.Flags)
	if p.Len > 0 {
		name += " len=" + strconv.Itoa(p.Len)
	}
	if p.Window == 0 && !strings.Contains(p.Flags, "RST") {
		name += " win=0"
	}
	if why := ladderLabels[p.Label]; why != "" {
		name += " · " + why
	}
	style := &opts.LineStyle{Color: packetColor(p), Width: 1.4, Opacity: opts.Float(1)}
	if cited {
		style.Width = 3
	}
	return arrow{
		Coords:    [2][2]int{{from, row}, {to, row}},
		Name:      name,
		LineStyle: style,
		Tip: tip{Title: text(p.Ref.String()), Rows: [][2]string{
			{"time", formatTime(p.Time) + " UTC"},
			{"relative", fmt.Sprintf("%+.6f s", rel)},
			{"direction", fmt.Sprintf("%s → %s", conv.Endpoint(p.From), conv.Endpoint(p.From.Other()))},
			{"flags", text(p.Flags)},
			{"seq / ack", fmt.Sprintf("%d / %d (relative)", p.Seq, p.Ack)},
			{"length", strconv.Itoa(p.Len)},
			{"window", rules.Thousands(p.Window)},
			{"why shown", text(p.Label)},
		}},
	}
}

// ladderLabels are the key-packet labels worth writing on the arrow; the
// others (syn, fin, rst...) repeat the flags.
var ladderLabels = map[string]string{
	"syn-retransmission":     "SYN retransmitted",
	"syn-ack-retransmission": "SYN-ACK retransmitted",
	"first-data":             "first data",
	"zero-window":            "zero window",
	"zero-window-probe":      "zero-window probe",
	"window-reopened":        "window reopened",
	"retransmission":         "retransmission",
	"keep-alive":             "keep-alive",
}

func packetColor(p *flows.KeyPacket) string {
	switch {
	case strings.Contains(p.Flags, "RST"):
		return eventStyles[analysis.EventRST].color
	case strings.Contains(p.Label, "zero-window") || p.Window == 0:
		return eventStyles[analysis.EventZeroWindowStart].color
	case strings.Contains(p.Flags, "SYN"):
		return eventStyles[analysis.EventSYN].color
	case strings.Contains(p.Flags, "FIN"):
		return eventStyles[analysis.EventFIN].color
	case strings.Contains(p.Label, "retransmission"):
		return "#8d6e63"
	}
	return "#607d8b"
}

// evidenceChart places an incident's evidence on a time axis, one lane per
// source: the ladder's stand-in when no conversation of the incident is
// listed (an incident from logs alone).
func (b *builder) evidenceChart(inc *rules.Incident) *chart {
	var sources []string
	index := map[string]int{}
	var points []point
	for j, e := range inc.Evidence {
		if e.Time.IsZero() {
			continue
		}
		i, ok := index[e.Source]
		if !ok {
			i = len(sources)
			index[e.Source] = i
			sources = append(sources, text(e.Source))
		}
		points = append(points, point{Value: [2]any{millis(e.Time), i}, Tip: tip{
			Title: fmt.Sprintf("evidence %d: %s", j+1, text(e.Ref.String())),
			Rows:  [][2]string{{"time", formatTime(e.Time) + " UTC"}, {"what", text(e.What)}},
		}})
	}
	if len(points) == 0 {
		return nil
	}
	s := charts.NewScatter()
	s.SetGlobalOptions(
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "item"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time", Scale: opts.Bool(true)}),
		charts.WithYAxisOpts(opts.YAxis{Type: "category", Data: sources, Inverse: opts.Bool(true),
			AxisLabel: &opts.AxisLabel{Width: 160, Overflow: "truncate"}}),
		charts.WithGridOpts(opts.Grid{Left: "8", Right: "24", Top: "16", Bottom: "24", ContainLabel: opts.Bool(true)}),
	)
	s.MultiSeries = append(s.MultiSeries, charts.SingleSeries{
		Name: "evidence", Type: types.ChartScatter, Data: points, SymbolSize: 12,
		ItemStyle: &opts.ItemStyle{Color: severityColor(inc.Severity)},
	})
	return b.newChart("Evidence over time", 80+40*len(sources), &s.BaseConfiguration)
}

// windowCharts draws, for each side that advertised a zero window, its
// receive window and the bytes the other side had in flight towards it,
// with the zero-window episodes shaded: the slow reader's queue filling.
func (b *builder) windowCharts(inc *rules.Incident) []*chart {
	var conv *analysis.Conversation
	for _, c := range b.conversationsOf(inc) {
		if len(c.ZeroWindows) > 0 {
			conv = c
			break
		}
	}
	if conv == nil {
		return nil
	}
	var out []*chart
	for _, side := range []flows.Side{flows.Client, flows.Server} {
		samples := conv.Windows.Client
		if side == flows.Server {
			samples = conv.Windows.Server
		}
		var bands []any
		for _, z := range conv.ZeroWindows {
			if z.Receiver != side {
				continue
			}
			end := conv.End
			if z.End != nil {
				end = z.End.Time
			}
			bands = append(bands, [2]areaEdge{
				{XAxis: millis(z.Start.Time), Name: "zero window", ItemStyle: &opts.ItemStyle{Color: eventStyles[analysis.EventZeroWindowStart].color, Opacity: opts.Float(0.15)},
					Tip: &tip{Title: "zero window", Rows: [][2]string{
						{"from", text(z.Start.Ref.String())},
						{"lasted", analysis.FormatDuration(z.Duration) + ", ended by " + text(z.EndedBy)},
						{"adverts / probes", fmt.Sprintf("%d / %d", z.Adverts, z.Probes)},
						{"bytes waiting", rules.Thousands(z.BytesWaiting)},
					}}},
				{XAxis: millis(end)},
			})
		}
		if len(bands) == 0 || len(samples) == 0 {
			continue
		}
		window := make([][2]float64, len(samples))
		inFlight := make([][2]float64, len(samples))
		for i, s := range samples {
			window[i] = [2]float64{millis(s.Time), float64(s.Window)}
			inFlight[i] = [2]float64{millis(s.Time), float64(s.InFlight)}
		}
		receiver, sender := conv.Endpoint(side), conv.Endpoint(side.Other())
		l := stepLines()
		l.MultiSeries = append(l.MultiSeries,
			stepSeries(fmt.Sprintf("window advertised by %s", receiver), window),
			stepSeries(fmt.Sprintf("bytes in flight from %s", sender), inFlight),
		)
		l.MultiSeries[0].MarkAreas = &opts.MarkAreas{Data: bands}
		out = append(out, b.newChart(fmt.Sprintf("Receive window of %s, in bytes (conversation %d)", receiver, conv.ID), 300, &l.BaseConfiguration))
	}
	return out
}

// synStormLead pads the SYN chart before and after the incident, to show
// the rate it rose from.
const synStormLead = time.Second

// maxListenerCharts caps the SYN charts of one incident.
const maxListenerCharts = 3

// synCharts counts connection attempts per 100 ms (wider for long storms)
// to each listener of the incident: answered, unanswered, and the SYN
// retransmissions that follow an overflowing accept queue.
func (b *builder) synCharts(inc *rules.Incident) []*chart {
	var listeners []string
	seen := map[string]bool{}
	for _, f := range inc.Flows {
		if !seen[f.Server] && len(listeners) < maxListenerCharts {
			seen[f.Server] = true
			listeners = append(listeners, f.Server)
		}
	}
	from, to := inc.Start.Add(-synStormLead), inc.End.Add(synStormLead)
	step := analysis.NiceStep(to.Sub(from), 600, 100*time.Millisecond)
	var out []*chart
	for _, listener := range listeners {
		steps := analysis.SYNAttempts(b.doc.Conversations, listener, from, to, step)
		answered := make([][2]float64, len(steps))
		unanswered := make([][2]float64, len(steps))
		retries := make([][2]float64, len(steps))
		for i, s := range steps {
			x := millis(s.Start)
			answered[i] = [2]float64{x, float64(s.Answered)}
			unanswered[i] = [2]float64{x, float64(s.Unanswered)}
			retries[i] = [2]float64{x, float64(s.SYNRetransmissions)}
		}
		l := stepLines()
		l.MultiSeries = append(l.MultiSeries,
			charts.SingleSeries{Name: "attempts answered", Type: types.ChartBar, Stack: "attempts", Data: answered, ItemStyle: &opts.ItemStyle{Color: "#66bb6a"}},
			charts.SingleSeries{Name: "attempts unanswered", Type: types.ChartBar, Stack: "attempts", Data: unanswered, ItemStyle: &opts.ItemStyle{Color: "#e53935"}},
			withColor(stepSeries("SYN retransmissions", retries), "#5e35b1"),
		)
		c := b.newChart(fmt.Sprintf("Connection attempts to %s per %s", text(listener), stepName(step)), 300, &l.BaseConfiguration)
		c.Note = "An attempt is placed at its first SYN; answered means a SYN-ACK (or a RST) came back."
		out = append(out, c)
	}
	return out
}

// halfClosedCharts counts the conversations left half-closed over the
// whole analysis, with the incident's endpoints as the side in CLOSE_WAIT:
// a steady climb is a process that never calls close().
func (b *builder) halfClosedCharts(inc *rules.Incident) []*chart {
	waiting := map[string]bool{}
	for _, f := range inc.Flows {
		waiting[f.Client], waiting[f.Server] = true, true
	}
	from, to := b.doc.Summary.Start, b.doc.Summary.End
	if from.IsZero() || inc.Start.Before(from) {
		from = inc.Start
	}
	to = maxTime(to, inc.End)
	step := analysis.NiceStep(to.Sub(from), 600, 100*time.Millisecond)
	steps := analysis.HalfClosedOverTime(b.doc.Conversations, waiting, from, to, step)
	data := make([][2]float64, len(steps))
	for i, s := range steps {
		data[i] = [2]float64{millis(s.Start), float64(s.Open)}
	}
	l := stepLines()
	series := stepSeries("half-closed, not yet closed", data)
	series.AreaStyle = &opts.AreaStyle{Opacity: opts.Float(0.2)}
	l.MultiSeries = append(l.MultiSeries, series)
	c := b.newChart("Half-closed conversations over time (peer sent FIN, no FIN back)", 280, &l.BaseConfiguration)
	c.Note = fmt.Sprintf("Most open at once during each %s.", stepName(step))
	return []*chart{c}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
