package analysis

import (
	"bufio"
	"errors"
	"fmt"
	"os"

	"wiremortem/decoders/nginx"
	"wiremortem/flows/capture"
)

// Detect tells what an input file holds from its first bytes, never from
// its name.
func Detect(path string) (Kind, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return "", errors.New("is a directory (pass the files inside it, or a glob)")
	}
	head, _ := bufio.NewReaderSize(f, 64<<10).Peek(64 << 10)
	if len(head) == 0 {
		return "", errors.New("empty file")
	}
	if capture.Sniff(head) {
		return KindCapture, nil
	}
	// Before the logs: an nginx.conf's "name value;" lines pass for
	// nstat counters (Debian's own nginx.conf did), while no log splits
	// into nginx statements with two of its directives.
	if nginx.SniffConfig(string(head)) {
		return KindNginxConf, nil
	}
	if kind, _ := sniffLog(sampleLines(head, 40)); kind != "" {
		return kind, nil
	}
	return "", fmt.Errorf("unknown kind of file (first bytes %q); tried: pcap, pcapng, gzip, zstd, nginx access log, nginx error log, strace output, ss/netstat/nstat output, nginx.conf", head[:min(16, len(head))])
}
