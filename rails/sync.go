package rails

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// syncScript makes Ruby write its output at once. Ruby block-buffers
// $stdout when it is a pipe, which would hold Rails' migration lines back
// until it exits: no live logs, and its stderr ahead of its stdout.
const syncScript = "# Written by migrun: unbuffered output, so migration logs are live and in order.\n$stdout.sync = true\n$stderr.sync = true\n"

// SyncOutput finds or writes a Ruby file in the temp dir that makes
// $stdout and $stderr unbuffered, and returns rubyopt (a RUBYOPT value)
// with "-r<file>" added, which `bundle exec` keeps. For commands that are
// not Ruby the option is inert.
//
// The file is shared: its name holds the user's id and a hash of its
// content, and a run uses the one an earlier run left when it is a
// regular file of this user's that no one else may write, with exactly
// that content, checked each time. Creating a file and removing it cost a
// tenth of a millisecond to more than one each on a container's file
// system; reading it back costs a few microseconds. Otherwise (another
// user's file in the way, say) the run writes a file of its own, which
// remove deletes; for the shared file remove does nothing.
func SyncOutput(rubyopt string) (opt string, remove func(), err error) {
	dir := os.TempDir()
	if strings.ContainsAny(dir, " \t") { // RUBYOPT splits on white space
		return "", nil, fmt.Errorf("temporary directory %q contains white space", dir)
	}
	with := func(path string) string { return strings.TrimSpace(rubyopt + " -r" + path) }
	shared := filepath.Join(dir, sharedSyncName())
	keep := func() {}
	if usableSyncFile(shared) {
		return with(shared), keep, nil
	}
	f, err := os.CreateTemp(dir, "migrun-sync-*.rb")
	if err != nil {
		return "", nil, err
	}
	own := f.Name()
	if _, err := f.WriteString(syncScript); err != nil {
		f.Close()
		os.Remove(own)
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		os.Remove(own)
		return "", nil, err
	}
	// Put it in place for the next runs: rename replaces whatever is
	// there (an older or damaged file) at once, and fails for another
	// user's file in a sticky directory such as /tmp; this run then
	// keeps its own file, and removes it.
	if os.Rename(own, shared) == nil {
		return with(shared), keep, nil
	}
	return with(own), func() { os.Remove(own) }, nil
}

// sharedSyncName is the shared file's name: one per user and content.
func sharedSyncName() string {
	h := fnv.New32a()
	io.WriteString(h, syncScript)
	return "migrun-sync-" + strconv.Itoa(os.Geteuid()) + "-" + strconv.FormatUint(uint64(h.Sum32()), 16) + ".rb"
}

// usableSyncFile reports whether path, not followed if a symlink, is a
// regular file of this user's that neither group nor others may write,
// holding syncScript.
func usableSyncFile(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 || fi.Size() != int64(len(syncScript)) {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Geteuid() {
		return false
	}
	buf := make([]byte, len(syncScript)+1)
	n, err := io.ReadFull(f, buf)
	return errors.Is(err, io.ErrUnexpectedEOF) && bytes.Equal(buf[:n], []byte(syncScript))
}
