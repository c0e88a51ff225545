package htmlreport

import (
	"fmt"
	"strconv"
	"time"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
	"github.com/go-echarts/go-echarts/v2/types"

	"wiremortem/analysis"
	"wiremortem/rules"
)

// chart is one chart on the page: a container and the ECharts option the
// static script draws in it. Option is data only (go-echarts' JSON()
// map): no function, no HTML. The script attaches the formatters.
type chart struct {
	ID     string
	Title  string
	Note   string
	Height int
	Option map[string]any
}

// tip is the tooltip of one mark: a title and label/value rows. The static
// script renders it, escaping every string.
type tip struct {
	Title string      `json:"title"`
	Rows  [][2]string `json:"rows"`
}

// builder makes the page's charts, numbering them in page order so the
// same document always gives the same IDs.
type builder struct {
	doc    *analysis.Document
	opts   Options
	charts int
	// transcriber makes the incidents' transcripts and finds the
	// document's conversations by ID.
	transcriber *analysis.Transcriber
}

func newBuilder(doc *analysis.Document, opts Options) *builder {
	return &builder{doc: doc, opts: opts, transcriber: analysis.NewTranscriber(doc)}
}

// newChart wraps a go-echarts configuration's options. Two root options
// go-echarts does not model are set here: UTC axes (every time in a report
// is on the capture clock, UTC) and no animation (a report is read, not
// watched, and a still page screenshots the same every time).
func (b *builder) newChart(title string, height int, cfg *charts.BaseConfiguration) *chart {
	b.charts++
	opt := cfg.JSON()
	opt["useUTC"] = true
	opt["animation"] = false
	return &chart{ID: "chart-" + strconv.Itoa(b.charts), Title: title, Height: height, Option: opt}
}

// millis is the time axis value of t: milliseconds since the epoch, as
// ECharts wants; a float keeps the microseconds.
func millis(t time.Time) float64 { return float64(t.UnixMicro()) / 1e3 }

// markStyle is how one kind of timeline event or packet is drawn.
type markStyle struct {
	label  string
	color  string
	symbol string
}

// eventStyles covers the kinds of timeline events the report knows; other
// kinds are drawn with defaultEventStyle under their own name.
var eventStyles = map[analysis.EventKind]markStyle{
	analysis.EventSYN:                   {"SYN", "#2e7d32", "triangle"},
	analysis.EventUpgrade101:            {"101 Switching Protocols", "#00838f", "diamond"},
	analysis.EventZeroWindowStart:       {"zero window", "#ef6c00", "rect"},
	analysis.EventZeroWindowEnd:         {"window reopened", "#9e9d24", "rect"},
	analysis.EventRST:                   {"RST", "#c62828", "pin"},
	analysis.EventFIN:                   {"FIN", "#1565c0", "circle"},
	analysis.EventWSClose:               {"WebSocket close frame", "#6a1b9a", "diamond"},
	analysis.EventUpgradeFailed:         {"upgrade not answered with 101", "#d84315", "diamond"},
	analysis.EventWSFrameWithoutUpgrade: {"WebSocket frame without an upgrade", "#b71c1c", "triangle"},
	analysis.EventWSViolation:           {"WebSocket protocol violation", "#8e24aa", "triangle"},
	analysis.EventLogError:              {"error line", "#ad1457", "roundRect"},
	analysis.EventLogRequest:            {"access line", "#5d4037", "roundRect"},
	analysis.EventStrace:                {"traced call", "#37474f", "pin"},
	analysis.EventSnapshot:              {"ss snapshot", "#78909c", "rect"},
}

var defaultEventStyle = markStyle{color: "#546e7a", symbol: "circle"}

// eventOrder fixes the legend order: handshake, data-level events, close.
var eventOrder = []analysis.EventKind{
	analysis.EventSYN, analysis.EventUpgrade101, analysis.EventUpgradeFailed, analysis.EventZeroWindowStart, analysis.EventZeroWindowEnd,
	analysis.EventWSFrameWithoutUpgrade, analysis.EventWSViolation, analysis.EventWSClose, analysis.EventLogError, analysis.EventLogRequest, analysis.EventStrace, analysis.EventSnapshot,
	analysis.EventFIN, analysis.EventRST,
}

var severityColors = map[rules.Severity]string{
	rules.Critical: "#b71c1c",
	rules.High:     "#e65100",
	rules.Medium:   "#f9a825",
	rules.Low:      "#1565c0",
	rules.Info:     "#607d8b",
}

func severityColor(s rules.Severity) string {
	if c, ok := severityColors[s]; ok {
		return c
	}
	return severityColors[rules.Info]
}

// point is a data item with a tooltip.
type point struct {
	Value [2]any `json:"value"`
	Tip   tip    `json:"tip"`
}

// areaEdge is one corner of a mark area (an incident band). The first
// corner carries the band's name, colour and tooltip.
type areaEdge struct {
	XAxis     float64         `json:"xAxis"`
	Name      string          `json:"name,omitempty"`
	ItemStyle *opts.ItemStyle `json:"itemStyle,omitempty"`
	Tip       *tip            `json:"tip,omitempty"`
}

// timeline draws every event of the document's timeline in its lane, with
// the incidents as coloured bands behind them.
func (b *builder) timeline() *chart {
	doc := b.doc
	if len(doc.Timeline) == 0 && len(doc.Incidents) == 0 {
		return nil
	}
	lanes, laneIndex := []string{}, map[string]int{}
	byKind := map[analysis.EventKind][]point{}
	var kinds []analysis.EventKind
	for _, ev := range doc.Timeline {
		i, ok := laneIndex[ev.Lane]
		if !ok {
			i = len(lanes)
			laneIndex[ev.Lane] = i
			lanes = append(lanes, text(ev.Lane))
		}
		if _, ok := byKind[ev.Kind]; !ok {
			kinds = append(kinds, ev.Kind)
		}
		t := tip{Title: eventLabel(ev.Kind), Rows: [][2]string{
			{"time", formatTime(ev.Time) + " UTC"},
			{"what", text(ev.What)},
			{"evidence", text(ev.Ref.String())},
		}}
		if ev.Conversation != 0 {
			t.Rows = append(t.Rows, [2]string{"conversation", strconv.Itoa(ev.Conversation)})
		}
		byKind[ev.Kind] = append(byKind[ev.Kind], point{Value: [2]any{millis(ev.Time), i}, Tip: t})
	}
	if len(lanes) == 0 {
		lanes = append(lanes, "incidents")
	}
	sc := charts.NewScatter()
	sc.SetGlobalOptions(
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "item"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time", Scale: opts.Bool(true)}),
		charts.WithYAxisOpts(opts.YAxis{
			Type: "category", Data: lanes, Inverse: opts.Bool(true),
			SplitLine: &opts.SplitLine{Show: opts.Bool(true)},
			AxisLabel: &opts.AxisLabel{Width: 160, Overflow: "truncate"},
		}),
		charts.WithDataZoomOpts(
			opts.DataZoom{Type: "inside", XAxisIndex: 0, FilterMode: "none"},
			opts.DataZoom{Type: "slider", XAxisIndex: 0, FilterMode: "none"},
		),
		charts.WithLegendOpts(opts.Legend{Top: "0"}),
		charts.WithGridOpts(opts.Grid{Left: "8", Right: "24", Top: "40", Bottom: "60", ContainLabel: opts.Bool(true)}),
	)
	for _, k := range orderedKinds(kinds) {
		st := eventStyle(k)
		sc.MultiSeries = append(sc.MultiSeries, charts.SingleSeries{
			Name: eventLabel(k), Type: types.ChartScatter, Data: byKind[k],
			Symbol: st.symbol, SymbolSize: 11, ItemStyle: &opts.ItemStyle{Color: st.color},
			Large: opts.Bool(false),
		})
	}
	if bands := b.incidentBands(); len(bands) > 0 {
		sc.MultiSeries = append(sc.MultiSeries, charts.SingleSeries{
			Name: "incidents", Type: types.ChartScatter, Data: []point{},
			ItemStyle: &opts.ItemStyle{Color: severityColors[rules.High]},
			MarkAreas: &opts.MarkAreas{Data: bands, MarkAreaStyle: opts.MarkAreaStyle{
				Label: &opts.Label{Show: opts.Bool(true), Position: "insideTop", Color: "#333"},
			}},
		})
	}
	c := b.newChart("Timeline", max(220, 90+34*len(lanes)), &sc.BaseConfiguration)
	if doc.TimelineOmitted > 0 {
		c.Note = fmt.Sprintf("The %s most telling events are drawn; %s routine ones (SYNs and FINs of healthy conversations first) are left out.",
			rules.Thousands(int64(len(doc.Timeline))), rules.Thousands(int64(doc.TimelineOmitted)))
	}
	return c
}

// incidentBands are the incidents as mark areas, at least a sliver wide
// so an instant incident still shows.
func (b *builder) incidentBands() []any {
	doc := b.doc
	start, end := doc.Summary.Start, doc.Summary.End
	for _, inc := range doc.Incidents {
		if start.IsZero() || inc.Start.Before(start) {
			start = inc.Start
		}
		if inc.End.After(end) {
			end = inc.End
		}
	}
	minWidth := max(end.Sub(start)/200, time.Millisecond)
	var bands []any
	for i, inc := range sortedIncidents(doc.Incidents) {
		from, to := inc.Start, inc.End
		if to.Sub(from) < minWidth {
			pad := (minWidth - to.Sub(from)) / 2
			from, to = from.Add(-pad), to.Add(pad)
		}
		t := &tip{Title: fmt.Sprintf("incident %d: %s", i+1, text(inc.Title)), Rows: [][2]string{
			{"severity", inc.Severity.String()},
			{"rule", text(inc.Rule)},
			{"when", formatSpan(inc.Start, inc.End)},
			{"summary", text(inc.Summary)},
		}}
		bands = append(bands, [2]areaEdge{
			{XAxis: millis(from), Name: strconv.Itoa(i + 1), ItemStyle: &opts.ItemStyle{Color: severityColor(inc.Severity), Opacity: opts.Float(0.18)}, Tip: t},
			{XAxis: millis(to)},
		})
	}
	return bands
}

func eventStyle(k analysis.EventKind) markStyle {
	if st, ok := eventStyles[k]; ok {
		return st
	}
	return defaultEventStyle
}

func eventLabel(k analysis.EventKind) string {
	if st, ok := eventStyles[k]; ok {
		return st.label
	}
	return text(string(k))
}

// orderedKinds puts the known kinds in eventOrder, then the others as they
// came.
func orderedKinds(seen []analysis.EventKind) []analysis.EventKind {
	present := map[analysis.EventKind]bool{}
	for _, k := range seen {
		present[k] = true
	}
	var out []analysis.EventKind
	for _, k := range eventOrder {
		if present[k] {
			out = append(out, k)
		}
	}
	for _, k := range seen {
		if _, known := eventStyles[k]; !known {
			out = append(out, k)
		}
	}
	return out
}

// overview draws the document's rates: conversations started and ended,
// resets, and whatever series other sources add.
func (b *builder) overview() *chart {
	r := b.doc.Rates
	if len(r.Series) == 0 {
		return nil
	}
	l := stepLines()
	for _, s := range r.Series {
		data := make([][2]float64, len(s.Counts))
		for i, n := range s.Counts {
			data[i] = [2]float64{millis(r.Start.Add(time.Duration(i) * r.Step)), float64(n)}
		}
		l.MultiSeries = append(l.MultiSeries, stepSeries(text(s.Name), data))
	}
	return b.newChart("Activity per "+stepName(r.Step), 300, &l.BaseConfiguration)
}

// stepLines is a line chart over a UTC time axis with zoom, for counts per
// step. The unit goes in the chart's title: an axis name would be cut off.
func stepLines() *charts.Line {
	l := charts.NewLine()
	l.SetGlobalOptions(
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "axis"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time", Scale: opts.Bool(true)}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", MinInterval: 1}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside", XAxisIndex: 0}, opts.DataZoom{Type: "slider", XAxisIndex: 0}),
		charts.WithLegendOpts(opts.Legend{Top: "0"}),
		charts.WithGridOpts(opts.Grid{Left: "8", Right: "24", Top: "48", Bottom: "60", ContainLabel: opts.Bool(true)}),
	)
	return l
}

// stepName says a step the way a title reads: "second", "100 ms",
// "5 minutes".
func stepName(d time.Duration) string {
	for _, u := range []struct {
		unit       time.Duration
		one, other string
	}{{time.Hour, "hour", "hours"}, {time.Minute, "minute", "minutes"}, {time.Second, "second", "seconds"}} {
		if d%u.unit == 0 {
			if d == u.unit {
				return u.one
			}
			return fmt.Sprintf("%d %s", d/u.unit, u.other)
		}
	}
	return analysis.FormatDuration(d)
}

func withColor(s charts.SingleSeries, color string) charts.SingleSeries {
	s.ItemStyle = &opts.ItemStyle{Color: color}
	return s
}

func stepSeries(name string, data any) charts.SingleSeries {
	return charts.SingleSeries{Name: name, Type: types.ChartLine, Step: "start", ShowSymbol: opts.Bool(false), Data: data}
}
