package report

import "strings"

// headlinePrefix starts every headline; teams search Slack for it.
const headlinePrefix = "DB migration"

// maxHeadlineValue bounds each value (environment, app, revision) in a
// headline, in bytes.
const maxHeadlineValue = 100

// Headline says in one line what happened and where, e.g.
//
//	DB migration failed in production (rails-app 1.2.3)
//	DB migration succeeded in staging
//	DB migration: lock not acquired in 30m in production (rails-app)
//
// It is the first line of the termination log and of the Slack message:
// what `kubectl describe`, a phone notification and a channel preview
// show. It is one line, at most a few hundred bytes, and plain text (not
// escaped for Slack).
func (r Result) Headline() string {
	where := r.where()
	verb := func(v, after string) string { return headlinePrefix + " " + v + where + after }
	colon := func(what string) string { return headlinePrefix + ": " + what + where }
	switch r.Outcome {
	case Succeeded:
		if r.Lock.Lost != "" {
			return verb("succeeded", ", but the lock was lost while it ran")
		}
		return verb("succeeded", "")
	case Skipped:
		return verb("skipped", ": nothing pending")
	case Failed:
		return verb("failed", "")
	case Killed:
		return verb("killed by "+SignalName(r.Signal), "")
	case Stopped:
		return verb("stopped by "+SignalName(r.Signal), " before the command ran")
	case NotFound:
		return verb("failed", ": command not found")
	case NotExecutable:
		return verb("failed", ": command not executable")
	case LockLost:
		return verb("stopped", ": lock lost")
	case LockTimeout, Unreachable, ConfigError, StillPending, Healthy, Unhealthy, NotifyTest:
		return colon(r.Describe())
	case InternalError:
		return colon("migrun internal error")
	case Current:
		return colon("nothing pending")
	case "":
		return colon("unknown outcome")
	}
	return colon(oneLine(string(r.Outcome), maxHeadlineValue))
}

// RunningHeadline is the headline of the notice that a migration is
// running, e.g. "DB migration running in production (rails-app 1.2.3)".
func (r Result) RunningHeadline() string {
	return headlinePrefix + " running" + r.where()
}

// where is " in <environment> (<app> <revision>)", leaving out what is not
// known.
func (r Result) where() string {
	var b strings.Builder
	if env := oneLine(r.Environment, maxHeadlineValue); env != "" {
		b.WriteString(" in " + env)
	}
	var what []string
	for _, v := range []string{r.App, r.Revision} {
		if v := oneLine(v, maxHeadlineValue); v != "" {
			what = append(what, v)
		}
	}
	if len(what) > 0 {
		b.WriteString(" (" + strings.Join(what, " ") + ")")
	}
	return b.String()
}
