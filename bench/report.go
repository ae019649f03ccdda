package main

import (
	"fmt"
	"strings"
)

// verdict says whether a row has a target and whether it was met.
type verdict int

const (
	info   verdict = iota // no target: context
	met                   // the target is met
	missed                // the target is missed
)

func (v verdict) String() string {
	switch v {
	case met:
		return "✅ met"
	case missed:
		return "❌ missed"
	}
	return ""
}

func judge(ok bool) verdict {
	if ok {
		return met
	}
	return missed
}

// row is one line of the summary table.
type row struct {
	what     string // what is measured
	result   string // the measurement: medians, percentiles
	baseline string // the baseline measured in the same run
	ratio    string // result against baseline
	target   string
	verdict  verdict
}

// section is one benchmark's results.
type section struct {
	num    int
	title  string
	method string   // how it was measured (markdown)
	rows   []row    // summary rows
	detail []string // further tables and figures (markdown blocks)
	notes  []string // what bounds a result, why a target is missed (markdown)
	err    error    // the benchmark could not run
}

// table renders rows as a markdown table.
func table(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// summary is the table of every section's rows.
func summary(sections []*section) string {
	var rows [][]string
	for _, s := range sections {
		if s.err != nil {
			rows = append(rows, []string{fmt.Sprintf("%d. %s", s.num, s.title), "not measured: " + s.err.Error(), "", "", "", ""})
			continue
		}
		for _, r := range s.rows {
			rows = append(rows, []string{fmt.Sprintf("%d. %s", s.num, r.what), r.result, r.baseline, r.ratio, r.target, r.verdict.String()})
		}
	}
	return table([]string{"benchmark", "migrun", "baseline (same run)", "ratio", "target", ""}, rows)
}

// sectionText is one section in full: method, rows, details, notes.
func sectionText(s *section) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %d. %s\n\n", s.num, s.title)
	if s.err != nil {
		fmt.Fprintf(&b, "Not measured: %v\n\n", s.err)
		return b.String()
	}
	if s.method != "" {
		b.WriteString(s.method + "\n\n")
	}
	var rows [][]string
	for _, r := range s.rows {
		rows = append(rows, []string{r.what, r.result, r.baseline, r.ratio, r.target, r.verdict.String()})
	}
	if len(rows) > 0 {
		b.WriteString(table([]string{"", "migrun", "baseline", "ratio", "target", ""}, rows) + "\n")
	}
	for _, d := range s.detail {
		b.WriteString(d + "\n\n")
	}
	for _, n := range s.notes {
		b.WriteString(n + "\n\n")
	}
	return b.String()
}
