package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/migrun/migrun/rails"
	"github.com/migrun/migrun/report"
	"github.com/migrun/migrun/runner"
)

// defaultRunner is how `migrun manifest` boots Rails to run its script.
var defaultRunner = []string{"bundle", "exec", "rails", "runner"}

// manifestConfig is `migrun manifest`'s configuration.
type manifestConfig struct {
	Manifest string `env:"MIGRUN_MANIFEST" envDefault:"db/migrun-manifest.json" flag:"output" help:"where to write the manifest, relative to the app's root"`
}

// manifestMain is `migrun manifest`: at image build, in the app's root,
// run migrun's Ruby script under Rails (bundle exec rails runner) so that
// Rails itself writes down the migrations it sees for RAILS_ENV; wait and
// --skip-if-current then use Rails' exact view. It makes no database
// connection. --print-script prints the script instead, for a rake task.
func manifestMain(ctx context.Context, args []string, environ map[string]string, stdout, stderr io.Writer) int {
	if slices.Contains(args, "--print-script") {
		_, _ = stdout.Write(rails.ManifestScript)
		return 0
	}
	cfg := &manifestConfig{}
	p, err := parseSettings(cfg, "migrun manifest", args, environ, stdout, func(w io.Writer) { printHelp(w, "manifest") })
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "migrun: %v\n", err)
		return report.ExitUsage
	}
	command := p.args
	if len(command) == 0 {
		command = slices.Clone(defaultRunner)
	}
	script, err := os.CreateTemp("", "migrun-manifest-*.rb")
	if err == nil {
		defer os.Remove(script.Name())
		_, err = script.Write(rails.ManifestScript)
		if cerr := script.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "migrun: write the manifest script: %v\n", err)
		return report.ExitSoftware
	}
	proc, err := runner.Start(append(command, script.Name(), cfg.Manifest), envList(environ), runner.Options{Stdout: stdout, Stderr: stderr, SeparateStderr: true})
	if err != nil {
		res := report.Result{Outcome: report.InternalError}
		switch {
		case errors.Is(err, runner.ErrNotFound):
			res.Outcome = report.NotFound
		case errors.Is(err, runner.ErrNotExecutable):
			res.Outcome = report.NotExecutable
		}
		fmt.Fprintf(stderr, "migrun: %v\n", err)
		return res.ExitStatus()
	}
	sigs, stopWatching := watchSignals()
	defer stopWatching()
	res := report.Result{}
	res.Outcome, res.ExitCode, res.Signal = commandOutcome(supervise(proc, supervision{sigs: sigs}))
	if res.Outcome == report.Succeeded {
		fmt.Fprintf(stderr, "migrun: manifest written to %s (%s)\n", cfg.Manifest, strings.Join(command, " "))
	}
	return res.ExitStatus()
}
