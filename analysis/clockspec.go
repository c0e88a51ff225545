package analysis

import (
	"fmt"
	"time"

	"wiremortem/correlate"
)

// ParseClock reads what a person says of the logs' clocks, written as
// analyze's --tz, --offset and --date flags and serve's upload form take
// it. A zone is ZONE (every log) or SOURCE=ZONE (one file, by path or base
// name, or one kind such as nginx-error), ZONE being an IANA name or an
// offset such as +08:00; an offset is SOURCE=DURATION (error.log=-3.2s); a
// date is YYYY-MM-DD. Empty arguments leave the defaults.
func ParseClock(zones, offsets []string, date string) (ClockOptions, error) {
	var c ClockOptions
	for _, spec := range zones {
		source, value := correlate.SplitSourceSpec(spec)
		loc, err := correlate.ParseZone(value)
		if err != nil {
			if source != "" {
				err = fmt.Errorf("%s: %w", source, err)
			}
			return c, err
		}
		if source == "" {
			c.Zone = loc
			continue
		}
		if c.Zones == nil {
			c.Zones = map[string]*time.Location{}
		}
		c.Zones[source] = loc
	}
	for _, spec := range offsets {
		source, value := correlate.SplitSourceSpec(spec)
		d, err := time.ParseDuration(value)
		if source == "" || err != nil {
			return c, fmt.Errorf("offset %q: want SOURCE=DURATION, e.g. error.log=-3.2s", spec)
		}
		if c.Offsets == nil {
			c.Offsets = map[string]time.Duration{}
		}
		c.Offsets[source] = d
	}
	if date != "" {
		d, err := time.Parse("2006-01-02", date)
		if err != nil {
			return c, fmt.Errorf("date %q: want YYYY-MM-DD", date)
		}
		c.Date = d
	}
	return c, nil
}
