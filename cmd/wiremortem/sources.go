package main

import (
	"github.com/spf13/pflag"

	"wiremortem/analysis"
)

// sourceFlags are the flags that say what the input files are and how
// their clocks relate to the capture's.
type sourceFlags struct {
	access, errorLog, strace, ss []string
	logFormat                    string
	tz, offsets                  []string
	date                         string
}

func addSourceFlags(fs *pflag.FlagSet) *sourceFlags {
	s := &sourceFlags{}
	fs.StringArrayVar(&s.access, "nginx-access", nil, "read `FILE` as an nginx access log (kinds are otherwise detected by content)")
	fs.StringArrayVar(&s.errorLog, "nginx-error", nil, "read `FILE` as an nginx error log")
	fs.StringArrayVar(&s.strace, "strace", nil, "read `FILE` as strace output")
	fs.StringArrayVar(&s.ss, "ss", nil, "read `FILE` as ss, netstat or nstat output")
	fs.StringVar(&s.logFormat, "nginx-log-format", "", "the access log's log_format: a name (combined, main) or the directive's `text`; by default the best-fitting of the built-in formats and those of an nginx.conf among the inputs")
	fs.StringArrayVar(&s.tz, "tz", nil, "`ZONE` of log times written without one (IANA name or +08:00), or SOURCE=ZONE for one file or kind (nginx-error, strace, ss); UTC by default")
	fs.StringArrayVar(&s.offsets, "offset", nil, "`SOURCE=DURATION` known skew to add to a log's times (e.g. error.log=-3.2s); estimated automatically otherwise")
	fs.StringVar(&s.date, "date", "", "`YYYY-MM-DD` day of strace -t/-tt times (the capture's first day by default)")
	return s
}

// options turns the flags into analysis options and forced-kind inputs.
func (s *sourceFlags) options() (analysis.Options, []analysis.Input, error) {
	var opts analysis.Options
	opts.NginxLogFormat = s.logFormat
	clock, err := analysis.ParseClock(s.tz, s.offsets, s.date)
	if err != nil {
		return opts, nil, err
	}
	opts.Clock = clock
	var forced []analysis.Input
	for _, f := range []struct {
		paths []string
		kind  analysis.Kind
	}{{s.access, analysis.KindNginxAccess}, {s.errorLog, analysis.KindNginxError}, {s.strace, analysis.KindStrace}, {s.ss, analysis.KindSockstat}} {
		for _, p := range f.paths {
			forced = append(forced, analysis.Input{Path: p, Kind: f.kind})
		}
	}
	return opts, forced, nil
}
