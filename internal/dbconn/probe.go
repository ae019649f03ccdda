package dbconn

import (
	"fmt"
	"strconv"
	"strings"
)

// OptionsProbeSetting is a placeholder setting (a dotted name any role may
// set) that only a server applying a connection's startup options reports
// back: how sessions.Probe, and a lock connection asked to probe, find out
// whether startup options (what PGOPTIONS sends) reach the server.
const OptionsProbeSetting = "migrun.options_probe"

// WithOptionsProbe is a connection's startup options with the probe's
// setting added.
func WithOptionsProbe(options string) string {
	return strings.TrimSpace(options + " -c " + OptionsProbeSetting + "=on")
}

// OptionsProbeColumns reads a probe's answer as two columns of a select
// list: the setting ("on", or NULL when the options did not reach the
// server) and server_version_num, as text (a cast would cost the first
// statement of a new backend another catalog lookup, 0.3 ms).
const OptionsProbeColumns = "current_setting('" + OptionsProbeSetting + "', true), current_setting('server_version_num')"

// ReadOptionsProbe is the answer in OptionsProbeColumns' two columns:
// setting (nil for SQL NULL) and server_version_num. A version that is not
// a number is an error, not version 0, which would read as a server too
// old for the dead-client settings.
func ReadOptionsProbe(setting, versionNum []byte) (OptionsProbe, error) {
	v, err := strconv.Atoi(string(versionNum))
	if err != nil || v <= 0 {
		return OptionsProbe{}, fmt.Errorf("unexpected server_version_num %q", versionNum)
	}
	return OptionsProbe{Applied: string(setting) == "on", Version: v}, nil
}

// OptionsProbe is what a probe connection found.
type OptionsProbe struct {
	// Refused: a connection with the probe's options failed with this
	// error where one without them succeeded (PgBouncer: "unsupported
	// startup parameter: options").
	Refused error
	// Applied: the setting read back, so the options reach the server
	// (false and Refused nil: a pooler that ignores them).
	Applied bool
	// Version is the server's server_version_num.
	Version int
}
