package rails

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// syncScript makes Ruby write its output at once. Ruby block-buffers
// $stdout when it is a pipe, which would hold Rails' migration lines back
// until it exits: no live logs, and its stderr ahead of its stdout.
const syncScript = "# Written by migrun: unbuffered output, so migration logs are live and in order.\n$stdout.sync = true\n$stderr.sync = true\n"

// SyncOutput writes a Ruby file that makes $stdout and $stderr unbuffered
// to the temp dir, and returns rubyopt (a RUBYOPT value) with "-r<file>"
// added, which `bundle exec` keeps; remove deletes the file. For commands
// that are not Ruby the option is inert.
func SyncOutput(rubyopt string) (string, func(), error) {
	f, err := os.CreateTemp("", "migrun-sync-*.rb")
	if err != nil {
		return "", nil, err
	}
	remove := func() { os.Remove(f.Name()) }
	if strings.ContainsAny(f.Name(), " \t") { // RUBYOPT splits on white space
		f.Close()
		remove()
		return "", nil, fmt.Errorf("temporary directory %q contains white space", filepath.Dir(f.Name()))
	}
	if _, err := f.WriteString(syncScript); err != nil {
		f.Close()
		remove()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		remove()
		return "", nil, err
	}
	return strings.TrimSpace(rubyopt + " -r" + f.Name()), remove, nil
}
