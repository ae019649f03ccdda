package report

import (
	"cmp"
	"math"
	"time"

	"github.com/migrun/migrun/rails"
)

// Schema names the shape of Document. Within a version fields are only
// added, never removed or changed in meaning; consumers should ignore
// fields they do not know. notify/result.schema.json writes it down and
// notify/README.md documents each field.
const Schema = "migrun.result/v1"

// MaxDocumentOutput bounds Document.Output, in bytes: about what a Slack
// message shows.
const MaxDocumentOutput = 32 << 10

// Document is a run's result as a versioned JSON document, for receivers
// other than Slack. Every field is always present: a value that does not
// apply is null, "" or an empty list, as documented per field.
type Document struct {
	Schema          string              `json:"schema"`
	Outcome         string              `json:"outcome"`
	Severity        string              `json:"severity"`
	Headline        string              `json:"headline"`
	Description     string              `json:"description"`
	ExitStatus      int                 `json:"exit_status"`
	ExitCode        *int                `json:"exit_code"`
	Signal          *string             `json:"signal"`
	Environment     string              `json:"environment"`
	App             string              `json:"app"`
	Revision        string              `json:"revision"`
	Host            string              `json:"host"`
	Namespace       string              `json:"namespace"`
	Link            string              `json:"link"`
	Started         *time.Time          `json:"started"`
	Finished        *time.Time          `json:"finished"`
	DurationSeconds float64             `json:"duration_seconds"`
	Migrations      []DocumentMigration `json:"migrations"`
	FailedMigration *DocumentMigration  `json:"failed_migration"`
	Pending         []string            `json:"pending"`
	Lock            DocumentLock        `json:"lock"`
	Error           string              `json:"error"`
	Output          string              `json:"output"`
	OutputOmitted   int64               `json:"output_omitted_bytes"`
	Attempts        []DocumentAttempt   `json:"attempts"`
}

// DocumentMigration is a migration in a Document.
type DocumentMigration struct {
	Version string  `json:"version"`
	Name    string  `json:"name"`
	Action  string  `json:"action"`
	Seconds float64 `json:"seconds"`
}

// DocumentLock is what happened to the lock, in a Document.
type DocumentLock struct {
	Mode           string  `json:"mode"`
	Name           string  `json:"name"`
	Acquired       bool    `json:"acquired"`
	WaitedSeconds  float64 `json:"waited_seconds"`
	TimeoutSeconds float64 `json:"timeout_seconds"`
	Lost           bool    `json:"lost"`
	LostReason     string  `json:"lost_reason"`
	CommandStopped bool    `json:"command_stopped"`
}

// DocumentAttempt is one run of the command, in a Document.
type DocumentAttempt struct {
	Started         *time.Time `json:"started"`
	DurationSeconds float64    `json:"duration_seconds"`
	ExitStatus      *int       `json:"exit_status"`
	Reason          string     `json:"reason"`
}

// Document is r as a Document. The output is cleaned (no terminal escape
// sequences or control characters) and bounded to MaxDocumentOutput;
// like r itself, it must have been redacted already.
func (r Result) Document() Document {
	d := Document{
		Schema:          Schema,
		Outcome:         cmp.Or(string(r.Outcome), "unknown"),
		Severity:        r.Severity().String(),
		Headline:        r.Headline(),
		Description:     r.Describe(),
		ExitStatus:      r.ExitStatus(),
		Environment:     r.Environment,
		App:             r.App,
		Revision:        r.Revision,
		Host:            r.Host,
		Namespace:       r.Namespace,
		Link:            r.Link,
		Started:         timestamp(r.Started),
		DurationSeconds: seconds(r.Duration),
		Migrations:      []DocumentMigration{},
		Pending:         []string{},
		Lock: DocumentLock{
			Mode:           r.Lock.Mode,
			Name:           r.Lock.Name,
			Acquired:       r.Lock.Acquired,
			WaitedSeconds:  seconds(r.Lock.Waited),
			TimeoutSeconds: seconds(r.Lock.Timeout),
			Lost:           r.Lock.Lost != "",
			LostReason:     r.Lock.Lost,
			CommandStopped: r.Lock.CommandStopped,
		},
		Error:    r.Err,
		Attempts: []DocumentAttempt{},
	}
	if !r.Started.IsZero() {
		d.Finished = timestamp(r.Started.Add(r.Duration))
	}
	if r.ExitCode >= 0 {
		d.ExitCode = &r.ExitCode
	}
	if r.Signal > 0 {
		name := SignalName(r.Signal)
		d.Signal = &name
	}
	for _, m := range r.Migrations {
		d.Migrations = append(d.Migrations, documentMigration(m))
	}
	if r.FailedMigration != nil {
		m := documentMigration(*r.FailedMigration)
		d.FailedMigration = &m
	}
	d.Pending = append(d.Pending, r.Pending...)
	var cut int
	d.Output, cut = boundOutput(CleanOutput(r.Output), MaxDocumentOutput)
	d.OutputOmitted = r.Omitted + int64(cut)
	for _, a := range r.Attempts {
		d.Attempts = append(d.Attempts, DocumentAttempt{
			Started:         timestamp(a.Started),
			DurationSeconds: seconds(a.Duration),
			ExitStatus:      commandStatus(a.ExitCode, a.Signal),
			Reason:          a.Reason,
		})
	}
	return d
}

func documentMigration(m rails.Migration) DocumentMigration {
	return DocumentMigration{Version: m.Version, Name: m.Name, Action: m.Action, Seconds: seconds(m.Duration)}
}

// commandStatus is the command's own exit status as a shell reports it:
// its exit code, or 128+N when signal N ended it; nil when unknown.
func commandStatus(code, signal int) *int {
	switch {
	case signal > 0:
		s := exitSignalBase + signal
		return &s
	case code >= 0:
		return &code
	}
	return nil
}

// timestamp is t in UTC to the millisecond, or nil for the zero time.
func timestamp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC().Truncate(time.Millisecond)
	return &t
}

// seconds is d in seconds to the millisecond.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}
