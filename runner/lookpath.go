package runner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// pathFrom returns the PATH the command is looked up in: the last PATH in env
// (as exec.Cmd would pass it on), else migrun's own when env is nil or has
// none.
func pathFrom(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return os.Getenv("PATH")
}

// lookPath resolves name like execvp(3): a name with a slash is used as is,
// otherwise the first executable regular file in path wins, and a candidate
// that exists but cannot be executed makes the failure ErrNotExecutable
// rather than ErrNotFound (126 rather than 127, as a shell reports it).
// Unlike execvp, relative PATH entries (and empty ones, meaning ".") are
// skipped, as os/exec does: a deploy must not run whatever sits in the
// working directory.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			return "", err
		}
		return name, nil
	}
	var notExec error
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		candidate := filepath.Join(dir, name)
		err := checkExecutable(candidate)
		if err == nil {
			return candidate, nil
		}
		if notExec == nil && errors.Is(err, ErrNotExecutable) {
			notExec = err
		}
	}
	if notExec != nil {
		return "", notExec
	}
	return "", ErrNotFound
}

// checkExecutable reports ErrNotFound or ErrNotExecutable (with the reason)
// for a file execve would refuse. A file with some execute bit passes: whether
// this user may run it, and whether its format is runnable, is left to execve,
// whose error Start maps the same way.
func checkExecutable(file string) error {
	info, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return ErrNotFound
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", ErrNotExecutable, syscall.EACCES)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case info.IsDir():
		return fmt.Errorf("%w: %w", ErrNotExecutable, syscall.EISDIR)
	case !info.Mode().IsRegular(), info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%w: %w", ErrNotExecutable, syscall.EACCES)
	}
	return nil
}

// classifyStartError maps the errno execve failed with onto the sentinel
// errors callers turn into exit statuses 127 and 126.
func classifyStartError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM),
		errors.Is(err, syscall.ENOEXEC), errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("%w: %w", ErrNotExecutable, err)
	}
	return err
}
