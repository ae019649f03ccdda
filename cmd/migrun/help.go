package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/migrun/migrun/report"
)

// subcommand is one of migrun's commands, for help.
type subcommand struct {
	Name     string     `json:"name"`
	Usage    string     `json:"usage"`
	Summary  string     `json:"summary"`
	Settings []*setting `json:"settings"`
}

// subcommands lists every command with its own settings only.
func subcommands() []subcommand {
	return []subcommand{
		{"run", "migrun run [flags] [-- COMMAND [ARG...]]",
			"take the lock, run the migration (default: bundle exec rails db:migrate), report, exit with its status",
			settingsOf(&runConfig{})},
		{"wait", "migrun wait [flags]",
			"block until no migration is pending (app Pods' init container)",
			settingsOf(&waitConfig{})},
		{"manifest", "migrun manifest [--output PATH] [--print-script] [-- RUNNER...]",
			"at image build: have Rails write down the migrations it sees (default runner: bundle exec rails runner), for wait and --skip-if-current",
			settingsOf(&manifestConfig{})},
		{"status", "migrun status [flags]",
			"with the Job's environment: the settings and their sources, the database, the lock (never taken), pending migrations, notifications (--notify-test, --format json)",
			settingsOf(&statusConfig{})},
		{"version", "migrun version", "print the version", nil},
		{"help", "migrun help [COMMAND] [--json]", "this help; --json lists every command's settings for tools", nil},
	}
}

// printHelp writes the help of one command, or the overview for "".
func printHelp(out io.Writer, command string) {
	cmds := subcommands()
	i := slices.IndexFunc(cmds, func(c subcommand) bool { return c.Name == command })
	if i < 0 {
		fmt.Fprintln(out, "migrun makes a database migration a safe, ordered step of a deploy.")
		fmt.Fprintln(out, "\nUsage:")
		for _, c := range cmds {
			fmt.Fprintf(out, "  %-42s %s\n", c.Usage, c.Summary)
		}
		fmt.Fprintln(out, "\nmigrun COMMAND --help shows a command's settings.")
		printExitStatuses(out)
		return
	}
	c := cmds[i]
	fmt.Fprintf(out, "Usage: %s\n  %s\n", c.Usage, c.Summary)
	if len(c.Settings) > 0 {
		fmt.Fprintln(out, "\nSettings (a flag wins over its variables):")
		printSettings(out, c.Settings)
	}
	printExitStatuses(out)
}

// otherVariables are read besides the settings: where the run happened
// (run: the Pod and its namespace, from the Downward API), and a
// database's URL for each database the app has.
var otherVariables = []string{"POD_NAME", "HOSTNAME", "POD_NAMESPACE", "<NAME>_DATABASE_URL"}

// exitStatuses documents the statuses; report decides them.
var exitStatuses = []struct {
	Status  string `json:"status"`
	Meaning string `json:"meaning"`
}{
	{"0", "success (also: skipped, nothing pending)"},
	{"1-125", "the command's own exit status; status: 1 when something is wrong"},
	{fmt.Sprint(report.ExitUsage), "usage or configuration error"},
	{fmt.Sprint(report.ExitUnavailable), "database unreachable, or it refused us"},
	{fmt.Sprint(report.ExitSoftware), "migrun itself failed"},
	{fmt.Sprint(report.ExitTempFail), "lock not acquired in time, or lost while the command ran (command stopped); wait: migrations still pending"},
	{fmt.Sprint(report.ExitNotExecutable), "the command could not be executed"},
	{fmt.Sprint(report.ExitNotFound), "the command was not found"},
	{"128+N", "the command died of signal N, or migrun was stopped by signal N before the command ran"},
}

func printExitStatuses(out io.Writer) {
	fmt.Fprintln(out, "\nExit status:")
	for _, e := range exitStatuses {
		fmt.Fprintf(out, "  %-6s %s\n", e.Status, e.Meaning)
	}
}

// helpMain is `migrun help [COMMAND] [--json]`.
func helpMain(args []string, stdout, stderr io.Writer) int {
	asJSON := slices.Contains(args, "--json")
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--json" })
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		doc := map[string]any{"commands": subcommands(), "exit_statuses": exitStatuses, "other_variables": otherVariables}
		if err := enc.Encode(doc); err != nil {
			fmt.Fprintf(stderr, "migrun: %v\n", err)
			return report.ExitSoftware
		}
		return 0
	}
	command := ""
	if len(args) > 0 {
		command = args[0]
		if !slices.ContainsFunc(subcommands(), func(c subcommand) bool { return c.Name == command }) {
			fmt.Fprintf(stderr, "migrun: unknown command %q (want run, wait, manifest, status, help or version)\n", command)
			return report.ExitUsage
		}
	}
	printHelp(stdout, command)
	return 0
}
