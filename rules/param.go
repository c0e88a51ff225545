package rules

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a rule parameter: it decides how a value is written
// in a config file or a --set flag and how the catalog prints it.
type Kind int

// Parameter kinds.
const (
	// KindDuration is a Go duration: 300ms, 2s, 1m30s.
	KindDuration Kind = iota
	// KindCount is a whole number of things (SYNs, conversations, probes).
	KindCount
	// KindBytes is a byte count: 1500, 64KiB, 1MB.
	KindBytes
	// KindRatio is a fraction between 0 and 1: 0.05 or 5%.
	KindRatio
	// KindDurations is a list of durations: [30s, 60s] or "30s,60s".
	KindDurations
)

var kindNames = [...]string{"duration", "count", "bytes", "ratio", "durations"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Syntax says how a value of this kind is written.
func (k Kind) Syntax() string {
	switch k {
	case KindDuration:
		return "a duration: 300ms, 2s, 1m30s"
	case KindCount:
		return "a whole number"
	case KindBytes:
		return "a byte count: 1500, 64KiB, 1MB"
	case KindRatio:
		return "a ratio: 0.05 or 5%"
	case KindDurations:
		return "a list of durations: [30s, 60s] or \"30s,60s\""
	}
	return k.String()
}

// Param is one named threshold of a rule, with its unit (the kind), its
// default and what it means.
type Param struct {
	Name    string
	Kind    Kind
	Default any
	Doc     string
}

// DurationParam declares a duration threshold.
func DurationParam(name string, def time.Duration, doc string) Param {
	return Param{Name: name, Kind: KindDuration, Default: def, Doc: doc}
}

// CountParam declares a count threshold.
func CountParam(name string, def int64, doc string) Param {
	return Param{Name: name, Kind: KindCount, Default: def, Doc: doc}
}

// BytesParam declares a byte-count threshold.
func BytesParam(name string, def int64, doc string) Param {
	return Param{Name: name, Kind: KindBytes, Default: def, Doc: doc}
}

// RatioParam declares a ratio threshold (0 to 1).
func RatioParam(name string, def float64, doc string) Param {
	return Param{Name: name, Kind: KindRatio, Default: def, Doc: doc}
}

// DurationsParam declares a list of durations.
func DurationsParam(name string, def []time.Duration, doc string) Param {
	return Param{Name: name, Kind: KindDurations, Default: def, Doc: doc}
}

// Params are the values of one rule's parameters for one evaluation:
// defaults, overridden by the config.
type Params struct {
	rule   string
	values map[string]any
}

func (p Params) get(name string, k Kind) any {
	v, ok := p.values[name]
	if !ok {
		// A rule asking for a parameter it did not declare is a bug in the
		// rule, caught by its tests.
		panic(fmt.Sprintf("rule %s reads undeclared parameter %q", p.rule, name))
	}
	if kindOf(v) != k {
		panic(fmt.Sprintf("rule %s reads parameter %q as %s, declared %s", p.rule, name, k, kindOf(v)))
	}
	return v
}

// Duration returns a duration parameter.
func (p Params) Duration(name string) time.Duration { return p.get(name, KindDuration).(time.Duration) }

// Count returns a count parameter.
func (p Params) Count(name string) int64 { return p.get(name, KindCount).(count).int64() }

// Bytes returns a byte-count parameter.
func (p Params) Bytes(name string) int64 { return p.get(name, KindBytes).(byteCount).int64() }

// Ratio returns a ratio parameter.
func (p Params) Ratio(name string) float64 { return p.get(name, KindRatio).(float64) }

// Durations returns a list-of-durations parameter.
func (p Params) Durations(name string) []time.Duration {
	return p.get(name, KindDurations).([]time.Duration)
}

// count and byteCount keep the two integer kinds apart in a Params map.
type (
	count     int64
	byteCount int64
)

func (c count) int64() int64     { return int64(c) }
func (b byteCount) int64() int64 { return int64(b) }

func kindOf(v any) Kind {
	switch v.(type) {
	case time.Duration:
		return KindDuration
	case count:
		return KindCount
	case byteCount:
		return KindBytes
	case float64:
		return KindRatio
	case []time.Duration:
		return KindDurations
	}
	return -1
}

// stored converts a declared default into the form kept in Params.
func (p Param) stored() (any, error) {
	switch d := p.Default.(type) {
	case time.Duration:
		if p.Kind == KindDuration {
			return d, nil
		}
	case int64:
		switch p.Kind {
		case KindCount:
			return count(d), nil
		case KindBytes:
			return byteCount(d), nil
		}
	case float64:
		if p.Kind == KindRatio {
			return d, nil
		}
	case []time.Duration:
		if p.Kind == KindDurations {
			return d, nil
		}
	}
	return nil, fmt.Errorf("parameter %s: default %v (%T) does not fit kind %s", p.Name, p.Default, p.Default, p.Kind)
}

// parse reads a value for this parameter from a config file (a string,
// number or list) or a --set flag (always a string).
func (p Param) parse(raw any) (any, error) {
	switch p.Kind {
	case KindDuration:
		return parseDuration(raw)
	case KindCount:
		n, err := parseWhole(raw)
		return count(n), err
	case KindBytes:
		n, err := parseBytes(raw)
		return byteCount(n), err
	case KindRatio:
		return parseRatio(raw)
	case KindDurations:
		return parseDurations(raw)
	}
	return nil, fmt.Errorf("unknown kind %s", p.Kind)
}

func parseDuration(raw any) (time.Duration, error) {
	switch v := raw.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (write 300ms, 2s, 1m30s)", v)
		}
		if d < 0 {
			return 0, fmt.Errorf("%q is negative", v)
		}
		return d, nil
	case int64:
		if v == 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("%d has no unit (write \"%ds\" or \"%dms\")", v, v, v)
	case float64:
		return 0, fmt.Errorf("%v has no unit (write \"%vs\")", v, v)
	}
	return 0, fmt.Errorf("%v is not a duration (write 300ms, 2s, 1m30s)", describe(raw))
}

func parseWhole(raw any) (int64, error) {
	switch v := raw.(type) {
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("%d is negative", v)
		}
		return v, nil
	case float64:
		if v == math.Trunc(v) && v >= 0 && v < 1<<53 {
			return int64(v), nil
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err == nil && n >= 0 {
			return n, nil
		}
		return 0, fmt.Errorf("%q is not a whole number", v)
	}
	return 0, fmt.Errorf("%v is not a whole number", describe(raw))
}

// byteUnits are the suffixes a byte count may carry; the longest match wins.
var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
}

func parseBytes(raw any) (int64, error) {
	s, ok := raw.(string)
	if !ok {
		return parseWhole(raw)
	}
	s = strings.TrimSpace(s)
	for _, u := range byteUnits {
		if num, found := strings.CutSuffix(s, u.suffix); found {
			n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || n < 0 || n*float64(u.factor) > math.MaxInt64/2 {
				return 0, fmt.Errorf("%q is not a byte count (write 1500, 64KiB, 1MB)", s)
			}
			return int64(n * float64(u.factor)), nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a byte count (write 1500, 64KiB, 1MB)", s)
	}
	return n, nil
}

func parseRatio(raw any) (float64, error) {
	var f float64
	switch v := raw.(type) {
	case float64:
		f = v
	case int64:
		f = float64(v)
	case string:
		s := strings.TrimSpace(v)
		pct, isPct := strings.CutSuffix(s, "%")
		n, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a ratio (write 0.05 or 5%%)", v)
		}
		if isPct {
			n /= 100
		}
		f = n
	default:
		return 0, fmt.Errorf("%v is not a ratio (write 0.05 or 5%%)", describe(raw))
	}
	if math.IsNaN(f) || f < 0 || f > 1 {
		return 0, fmt.Errorf("%v is not between 0 and 1", raw)
	}
	return f, nil
}

func parseDurations(raw any) ([]time.Duration, error) {
	var items []any
	switch v := raw.(type) {
	case []any:
		items = v
	case string:
		for part := range strings.SplitSeq(strings.Trim(strings.TrimSpace(v), "[]"), ",") {
			if part = strings.TrimSpace(part); part != "" {
				items = append(items, part)
			}
		}
	default:
		return nil, fmt.Errorf("%v is not a list of durations (write [30s, 60s] or \"30s,60s\")", describe(raw))
	}
	if len(items) == 0 {
		return nil, errors.New("the list is empty")
	}
	out := make([]time.Duration, 0, len(items))
	for i, it := range items {
		d, err := parseDuration(it)
		if err != nil {
			return nil, fmt.Errorf("item %d: %v", i+1, err)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// describe prints a config value for an error message.
func describe(raw any) string {
	switch v := raw.(type) {
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return "an empty value"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprint(raw)
}

// formatValue prints a parameter value the way it is written in a config
// file, so the catalog's defaults can be pasted back.
func formatValue(v any) string {
	switch x := v.(type) {
	case time.Duration:
		return formatConfigDuration(x)
	case count:
		return strconv.FormatInt(int64(x), 10)
	case byteCount:
		// The largest binary unit that divides it: 64KiB, 1536KiB, 2MiB.
		for i := 2; i >= 0; i-- {
			if u := byteUnits[i]; x > 0 && int64(x)%u.factor == 0 {
				return strconv.FormatInt(int64(x)/u.factor, 10) + u.suffix
			}
		}
		return strconv.FormatInt(int64(x), 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []time.Duration:
		parts := make([]string, len(x))
		for i, d := range x {
			parts[i] = formatConfigDuration(d)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprint(v)
}

// formatConfigDuration writes whole seconds as "60s" rather than Go's
// "1m0s", so a default reads like the timeouts people configure.
func formatConfigDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}

// ParseBytes reads a byte count the way thresholds are written: 1500,
// 64KiB, 1MB.
func ParseBytes(s string) (int64, error) { return parseBytes(s) }
