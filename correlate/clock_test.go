package correlate

import (
	"math/rand"
	"testing"
	"time"
)

func TestParseZone(t *testing.T) {
	tests := []struct {
		in      string
		offset  int // seconds east of UTC on 2026-11-22
		wantErr bool
	}{
		{"UTC", 0, false},
		{"+08:00", 8 * 3600, false},
		{"-0530", -(5*3600 + 30*60), false},
		{"UTC+8", 8 * 3600, false},
		{"Asia/Shanghai", 8 * 3600, false},
		{"Europe/Paris", 3600, false},
		{"+25:00", 0, true},
		{"Mars/Olympus", 0, true},
	}
	for _, tt := range tests {
		loc, err := ParseZone(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseZone(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		_, off := time.Date(2026, 11, 22, 12, 0, 0, 0, loc).Zone()
		if off != tt.offset {
			t.Errorf("ParseZone(%q) offset %d, want %d", tt.in, off, tt.offset)
		}
	}
}

// TestEstimateSkewRecoversOffset plants a +3.2 s offset behind realistic
// delays (tens of microseconds, a few slow accepts, a few wrong pairings)
// and checks the estimate lands within 10 ms.
func TestEstimateSkewRecoversOffset(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	const offset = 3200 * time.Millisecond
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var samples []SkewSample
	for i := 0; i < 60; i++ {
		pkt := base.Add(time.Duration(i) * 137 * time.Millisecond)
		delay := time.Duration(20+rng.Intn(200)) * time.Microsecond
		if i%10 == 3 {
			delay = time.Duration(5+rng.Intn(40)) * time.Millisecond // a busy accept loop
		}
		// accept() returns after the ACK: log = pkt + delay, in the log's
		// clock which is 3.2 s behind.
		samples = append(samples, SkewSample{Capture: pkt, Log: pkt.Add(delay).Add(-offset), Bound: LowerBound})
	}
	// Two wrong pairings far off.
	samples = append(samples, SkewSample{Capture: base, Log: base.Add(-9 * time.Second), Bound: LowerBound})
	samples = append(samples, SkewSample{Capture: base, Log: base.Add(4 * time.Second), Bound: LowerBound})
	est, ok := EstimateSkew(samples)
	if !ok {
		t.Fatal("no estimate")
	}
	if d := est.Offset - offset; d > 10*time.Millisecond || d < -10*time.Millisecond {
		t.Errorf("estimated %v, want %v within 10ms", est.Offset, offset)
	}
	if est.Matches != 62 {
		t.Errorf("matches %d, want 62", est.Matches)
	}

	// With connect() pairings too (upper bounds), the estimate tightens.
	for i := 0; i < 20; i++ {
		pkt := base.Add(time.Duration(i) * 211 * time.Millisecond)
		delay := time.Duration(10+rng.Intn(50)) * time.Microsecond
		samples = append(samples, SkewSample{Capture: pkt, Log: pkt.Add(-delay).Add(-offset), Bound: UpperBound})
	}
	est, _ = EstimateSkew(samples)
	if d := est.Offset - offset; d > time.Millisecond || d < -time.Millisecond {
		t.Errorf("with both bounds estimated %v, want %v within 1ms", est.Offset, offset)
	}
}

func TestDescribeOffset(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	winter, summer := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		applied time.Duration
		res     time.Duration
		read    *time.Location
		at      time.Time
		given   bool
		want    string
	}{
		{-(8*time.Hour + 3200*time.Millisecond), 0, time.UTC, winter, false, "its times read as local time in a UTC+08:00 zone (pass --tz to say which); its clock ran 3.2s ahead of the capture's"},
		{5*time.Hour + 30*time.Minute - 266*time.Microsecond, 0, time.UTC, winter, false, "its times read as local time in a UTC-05:30 zone (pass --tz to say which); its clock agreed with the capture's to the millisecond"},
		{1500 * time.Millisecond, 0, time.UTC, winter, false, "its clock ran 1.5s behind the capture's"},
		// --tz said Europe/Berlin; the log was written in UTC+08:00.
		{-7 * time.Hour, 0, berlin, winter, true, "its times read as local time in a UTC+08:00 zone, not in Europe/Berlin (UTC+01:00 then) as --tz says; its clock agreed with the capture's to the millisecond"},
		{-6 * time.Hour, 0, berlin, summer, true, "its times read as local time in a UTC+08:00 zone, not in Europe/Berlin (UTC+02:00 then) as --tz says; its clock agreed with the capture's to the millisecond"},
		// --tz said UTC; the log was written in UTC-05:00.
		{5 * time.Hour, 0, time.UTC, winter, true, "its times read as local time in a UTC-05:00 zone, not in UTC (UTC+00:00 then) as --tz says; its clock agreed with the capture's to the millisecond"},
		{-2 * time.Second, 0, berlin, winter, true, "its clock ran 2s ahead of the capture's"},
		// nginx writes whole seconds: 217 ms is the rounding, not the clock.
		{217 * time.Millisecond, time.Second, time.UTC, winter, false, "its clock agreed with the capture's as far as its times tell: they are written to the second"},
		{-3200 * time.Millisecond, time.Second, time.UTC, winter, false, "its clock ran 3.2s ahead of the capture's (its times are written to the second)"},
	} {
		if got := DescribeOffset(tt.applied, tt.res, tt.read, tt.at, tt.given); got != tt.want {
			t.Errorf("DescribeOffset(%v, %v, %v, %v, %v) = %q, want %q", tt.applied, tt.res, tt.read, tt.at, tt.given, got, tt.want)
		}
	}
}

func TestTimeResolution(t *testing.T) {
	base := time.Date(2026, 11, 22, 11, 52, 23, 0, time.UTC)
	for _, tt := range []struct {
		offsets []time.Duration
		want    time.Duration
	}{
		{[]time.Duration{0, time.Second, 5 * time.Second}, time.Second},
		{[]time.Duration{0, 217 * time.Millisecond}, time.Millisecond},
		{[]time.Duration{0, 217 * time.Millisecond, 3 * time.Microsecond}, time.Microsecond},
		{[]time.Duration{5}, 0},
		{nil, 0},
	} {
		var times []time.Time
		for _, o := range tt.offsets {
			times = append(times, base.Add(o))
		}
		if got := TimeResolution(times); got != tt.want {
			t.Errorf("TimeResolution(%v) = %v, want %v", tt.offsets, got, tt.want)
		}
	}
}

// TestEstimateSkewOfWholeSeconds: pairings of times written to the second
// give an estimate good to a second, whatever the samples' scatter.
func TestEstimateSkewOfWholeSeconds(t *testing.T) {
	log := time.Date(2026, 11, 22, 11, 52, 23, 0, time.UTC)
	est, ok := EstimateSkew([]SkewSample{{Capture: log.Add(217 * time.Millisecond), Log: log, Bound: LowerBound}})
	if !ok || est.Resolution != time.Second || est.Spread != time.Second || est.Offset != 217*time.Millisecond {
		t.Errorf("estimate %+v, want offset 217ms good to 1s", est)
	}
	est, _ = EstimateSkew([]SkewSample{{Capture: log.Add(217 * time.Millisecond), Log: log.Add(3 * time.Microsecond), Bound: LowerBound}})
	if est.Resolution != 0 || est.Spread != 0 {
		t.Errorf("microsecond times: estimate %+v, want no resolution and no spread", est)
	}
}
