package nginx

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"wiremortem/decoders/logline"
)

// The benchmarks parse generated logs held in memory: WIREMORTEM_BENCH_MB
// sets their size (default 32). With WIREMORTEM_BENCH_DUMP set to a
// directory they also write the logs there, to time `wc -l` on the same
// bytes.

func benchSize() int {
	if mb, err := strconv.Atoi(os.Getenv("WIREMORTEM_BENCH_MB")); err == nil && mb > 0 {
		return mb << 20
	}
	return 32 << 20
}

var (
	benchOnce                  sync.Once
	benchAccessLog, benchError []byte
)

// benchLogs makes an access log (the lab_text format) and an error log with
// the line shapes of the lab logs, each line distinct.
func benchLogs(b *testing.B) ([]byte, []byte) {
	benchOnce.Do(func() {
		size := benchSize()
		start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		var access, errs bytes.Buffer
		access.Grow(size + 1024)
		errs.Grow(size + 1024)
		uris := []string{"/static/index.html", "/api/v1/items?id=42&sort=asc", "/ws/socket", "/retry"}
		for i := 0; access.Len() < size; i++ {
			t := start.Add(time.Duration(i) * time.Millisecond)
			uri := uris[i%len(uris)]
			up, upStatus := `"10.0.0.7:8081"`, `"200"`
			if i%10 == 0 {
				up, upStatus = `"10.0.0.7:8082, 10.0.0.7:8081"`, `"502, 200"`
			}
			fmt.Fprintf(&access, `10.%d.%d.%d:%d %d 1 [%s] "GET %s HTTP/1.1" 200 %d %d 0.%03d %s %s "0.000" "0.%03d" "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0" lab 8080 %d.%03d`+"\n",
				i>>16&255, i>>8&255, i&255, 1024+i%60000, i+1, t.Format("02/Jan/2006:15:04:05 -0700"), uri, i%5000, i%5000+200, i%1000,
				up, upStatus, i%1000, t.Unix(), t.Nanosecond()/1e6)
		}
		for i := 0; errs.Len() < size; i++ {
			t := start.Add(time.Duration(i) * time.Millisecond)
			fmt.Fprintf(&errs, `%s [error] 1234#1234: *%d recv() failed (104: Connection reset by peer) while proxying upgraded connection, client: 10.%d.%d.%d, server: lab, request: "GET /ws/%d HTTP/1.1", upstream: "http://10.0.0.7:8084/ws/%d", host: "lab"`+"\n",
				t.Format("2006/01/02 15:04:05"), i+1, i>>16&255, i>>8&255, i&255, i, i)
		}
		benchAccessLog, benchError = access.Bytes(), errs.Bytes()
		if dir := os.Getenv("WIREMORTEM_BENCH_DUMP"); dir != "" {
			for name, data := range map[string][]byte{"bench_access.log": benchAccessLog, "bench_error.log": benchError} {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					panic(err)
				}
			}
		}
	})
	return benchAccessLog, benchError
}

func BenchmarkAccessScanner(b *testing.B) {
	access, _ := benchLogs(b)
	format := mustFormat(b, labTextFormat)
	b.SetBytes(int64(len(access)))
	b.ResetTimer()
	for range b.N {
		s := NewAccessScanner(bytes.NewReader(access), format, logline.Options{Source: "bench"})
		for s.Scan() {
		}
		if tally := s.Tally(); tally.Unparsed() != 0 || s.Err() != nil {
			b.Fatalf("tally %+v, err %v", tally, s.Err())
		}
	}
}

func BenchmarkErrorScanner(b *testing.B) {
	_, errs := benchLogs(b)
	b.SetBytes(int64(len(errs)))
	b.ResetTimer()
	for range b.N {
		s := NewErrorScanner(bytes.NewReader(errs), logline.Options{Source: "bench"})
		for s.Scan() {
		}
		if tally := s.Tally(); tally.Unparsed() != 0 || s.Err() != nil {
			b.Fatalf("tally %+v, err %v", tally, s.Err())
		}
	}
}

// BenchmarkLineReader is the floor: reading the same access log line by
// line and parsing nothing.
func BenchmarkLineReader(b *testing.B) {
	access, _ := benchLogs(b)
	b.SetBytes(int64(len(access)))
	b.ResetTimer()
	for range b.N {
		r := logline.NewReader(bytes.NewReader(access), logline.Options{})
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}
