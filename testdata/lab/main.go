// Command lab regenerates wiremortem's real test corpus: every scenario of
// internal/lab, each into its own directory with its facts.json.
//
//	go run ./testdata/lab [-only a,b] [-out DIR] [-j N] [-list]
//
// It needs root (tcpdump on lo) and the tools the scenarios name; see
// README.md beside this file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"wiremortem/internal/lab"
)

func main() {
	lab.RunRoleIfAsked()
	only := flag.String("only", "", "comma-separated scenario names (default: all)")
	out := flag.String("out", "testdata/captures", "output directory; each scenario writes OUT/<name>/")
	jobs := flag.Int("j", 2, "scenarios run at once (each owns its own addresses)")
	list := flag.Bool("list", false, "list the scenarios and exit")
	flag.Parse()

	var names []string
	for _, sc := range lab.Scenarios() {
		if *list {
			fmt.Printf("%-26s %s\n", sc.Name, sc.Description)
		}
		names = append(names, sc.Name)
	}
	if *list {
		return
	}
	if *only != "" {
		names = strings.Split(*only, ",")
		for _, n := range names {
			if _, ok := lab.Lookup(n); !ok {
				fmt.Fprintf(os.Stderr, "lab: no scenario %q (try -list)\n", n)
				os.Exit(2)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	sem := make(chan struct{}, max(*jobs, 1))
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			f, err := lab.Run(ctx, name, *out)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", name, err)
				return
			}
			fmt.Printf("ok   %-26s %5.1fs  %d conversations, %d incidents, %d files\n",
				name, time.Since(start).Seconds(), len(f.Conversations), len(f.Incidents), len(f.Files))
		}()
	}
	wg.Wait()
	if failed > 0 {
		os.Exit(1)
	}
}
