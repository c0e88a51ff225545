package analysis

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones these tests name, whatever the machine has
)

func TestParseClock(t *testing.T) {
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal("no time zone database:", err)
	}
	tests := []struct {
		name           string
		zones, offsets []string
		date           string
		check          func(ClockOptions) bool
		err            string
	}{
		{name: "nothing", check: func(c ClockOptions) bool {
			return c.Zone == nil && c.Zones == nil && c.Offsets == nil && c.Date.IsZero()
		}},
		{name: "one zone for all", zones: []string{"Asia/Shanghai"}, check: func(c ClockOptions) bool { return c.Zone.String() == shanghai.String() && c.Zones == nil }},
		{name: "zone per source", zones: []string{"+08:00", "error.log=UTC-05:30"}, check: func(c ClockOptions) bool {
			_, off := time.Date(2026, 1, 1, 0, 0, 0, 0, c.Zones["error.log"]).Zone()
			return c.Zone != nil && off == -(5*3600+1800)
		}},
		{name: "offset", offsets: []string{"error.log=-3.2s"}, check: func(c ClockOptions) bool { return c.Offsets["error.log"] == -3200*time.Millisecond }},
		{name: "date", date: "2026-11-22", check: func(c ClockOptions) bool { return c.Date.Equal(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)) }},
		{name: "bad zone", zones: []string{"Mars/Olympus"}, err: `time zone "Mars/Olympus"`},
		{name: "bad zone for one source", zones: []string{"error.log=+25:00"}, err: `error.log: time zone "+25:00"`},
		{name: "offset without source", offsets: []string{"-3s"}, err: `offset "-3s": want SOURCE=DURATION`},
		{name: "offset not a duration", offsets: []string{"error.log=soon"}, err: `offset "error.log=soon"`},
		{name: "bad date", date: "22/11/2026", err: `date "22/11/2026": want YYYY-MM-DD`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseClock(tt.zones, tt.offsets, tt.date)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("got %+v", c)
			}
		})
	}
}
