package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mark is one line the helper's stamp mode wrote: when a command started
// or ended, which process it was, and (at the end) its own CPU time.
type mark struct {
	end  bool
	at   time.Time
	pid  int           // the command's pid
	ppid int           // the migrun that ran it
	cpu  time.Duration // the command's own CPU time (end marks)
}

// section is one command's critical section, from its marks.
type critical struct {
	start, end time.Time
	pid, ppid  int
	cpu        time.Duration
}

// readMarks reads a marks file into critical sections in time order and
// checks that they never overlap: the lock excluded.
func readMarks(path string) ([]critical, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var marks []mark
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("bad mark %q", line)
		}
		ns, err1 := strconv.ParseInt(f[1], 10, 64)
		pid, err2 := strconv.Atoi(f[2])
		ppid, err3 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("bad mark %q", line)
		}
		m := mark{end: f[0] == "end", at: time.Unix(0, ns), pid: pid, ppid: ppid}
		if m.end && len(f) >= 5 {
			cpu, _ := strconv.ParseInt(f[4], 10, 64)
			m.cpu = time.Duration(cpu)
		}
		marks = append(marks, m)
	}
	slices.SortStableFunc(marks, func(a, b mark) int { return a.at.Compare(b.at) })
	var out []critical
	for i := 0; i < len(marks); i += 2 {
		if i+1 >= len(marks) || marks[i].end || !marks[i+1].end || marks[i].pid != marks[i+1].pid {
			return nil, fmt.Errorf("critical sections overlap or are incomplete in %s:\n%s", path, data)
		}
		out = append(out, critical{start: marks[i].at, end: marks[i+1].at, pid: marks[i].pid, ppid: marks[i].ppid, cpu: marks[i+1].cpu})
	}
	return out, nil
}
