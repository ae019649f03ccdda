// Command testreport reads `go test -json` on stdin and writes what a
// person wants from a test run: each package's result as go test prints
// it, the output of every failed test, and at the end how many tests ran,
// failed and were skipped, with each skip's reason. It exits 1 when
// anything failed (or did not build), so `make test` fails with it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type key struct{ pkg, test string }

// summary is what a run came to.
type summary struct {
	passed, failed, skipped int
	skips                   []string // "pkg TestName: reason"
	failedPkgs              []string
}

func main() {
	s, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if s.failed > 0 || len(s.failedPkgs) > 0 {
		os.Exit(1)
	}
}

// report copies the run's results to out as they come and ends with the
// summary.
func report(in io.Reader, out io.Writer) (summary, error) {
	var s summary
	outputs := map[key][]string{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Fprintln(out, string(line)) // not JSON: go test's own complaint
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output", "build-output":
			outputs[k] = append(outputs[k], e.Output)
			if e.Test == "" && e.Action == "output" && isResultLine(e.Output) {
				fmt.Fprint(out, e.Output) // "ok  pkg 1.2s", "FAIL pkg", "?  pkg [no test files]"
			}
		case "pass":
			if e.Test != "" {
				s.passed++
			}
			delete(outputs, k)
		case "skip":
			if e.Test != "" {
				s.skipped++
				s.skips = append(s.skips, e.Package+" "+e.Test+": "+skipReason(outputs[k]))
			}
			delete(outputs, k)
		case "fail", "build-fail":
			if e.Test != "" {
				s.failed++
				fmt.Fprintf(out, "--- FAIL: %s %s\n", e.Package, e.Test)
				for _, o := range outputs[k] {
					fmt.Fprint(out, "    ", o)
				}
			} else {
				s.failedPkgs = append(s.failedPkgs, e.Package)
				for _, o := range outputs[k] {
					if !isResultLine(o) {
						fmt.Fprint(out, o)
					}
				}
			}
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	fmt.Fprintf(out, "\n%d tests passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	slices.Sort(s.skips)
	for _, sk := range s.skips {
		fmt.Fprintln(out, "  skipped:", sk)
	}
	for _, p := range s.failedPkgs {
		fmt.Fprintln(out, "  FAILED:", p)
	}
	return s, nil
}

// isResultLine is a package's closing line.
func isResultLine(o string) bool {
	return strings.HasPrefix(o, "ok  \t") || strings.HasPrefix(o, "FAIL\t") || strings.HasPrefix(o, "?   \t") ||
		strings.HasPrefix(o, "ok \t") || strings.HasPrefix(o, "FAIL ")
}

// skipReason is what a skipped test said, without go test's own lines.
func skipReason(output []string) string {
	var reason []string
	for _, o := range output {
		o = strings.TrimSpace(o)
		if o == "" || strings.HasPrefix(o, "=== ") || strings.HasPrefix(o, "--- SKIP") {
			continue
		}
		// "file_test.go:12: why": the why.
		if i := strings.Index(o, ": "); i > 0 && strings.Contains(o[:i], ".go:") {
			o = o[i+2:]
		}
		reason = append(reason, o)
	}
	if len(reason) == 0 {
		return "(no reason given)"
	}
	return strings.Join(reason, " ")
}
