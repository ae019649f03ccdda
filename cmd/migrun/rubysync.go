package main

import (
	"sync"

	"github.com/migrun/migrun/rails"
)

// rubySync is a run's Ruby sync file (rails.SyncOutput), kept off the
// critical path: it is found (or written) in the background from the
// start of the run and added to the command's RUBYOPT when the command is
// about to start. Usually it is the file an earlier run left, shared and
// checked each time. A file of the run's own (when the shared one cannot
// be had) is removed in the background once no attempt follows, while the
// lock is released and the result reported, and migrun waits for the
// removal before it exits. A nil *rubySync (with MIGRUN_RUBY_SYNC=false)
// does nothing.
type rubySync struct {
	written chan struct{} // closed once SyncOutput returned
	opt     string        // RUBYOPT with -r<file>
	remove  func()
	err     error

	removeOnce sync.Once
	removed    chan struct{} // closed once the file is gone
}

// startRubySync starts finding or writing the sync file; rubyopt is the command's
// RUBYOPT, kept ahead of migrun's option.
func startRubySync(rubyopt string) *rubySync {
	s := &rubySync{written: make(chan struct{}), removed: make(chan struct{})}
	go func() {
		defer close(s.written)
		s.opt, s.remove, s.err = rails.SyncOutput(rubyopt)
	}()
	return s
}

// rubyopt waits for the file and returns the command's RUBYOPT with it;
// ok is false (and err why) when there is none to give.
func (s *rubySync) rubyopt() (opt string, ok bool, err error) {
	if s == nil {
		return "", false, nil
	}
	<-s.written
	return s.opt, s.err == nil, s.err
}

// cleanUp starts removing a file of the run's own, once it is written;
// no command may start after it. It may be called any number of times.
func (s *rubySync) cleanUp() {
	if s == nil {
		return
	}
	s.removeOnce.Do(func() {
		go func() {
			defer close(s.removed)
			<-s.written
			if s.remove != nil { // nil when it could not be written
				s.remove()
			}
		}()
	})
}

// wait removes a file of the run's own (if cleanUp has not started that
// yet) and waits until it is gone.
func (s *rubySync) wait() {
	if s == nil {
		return
	}
	s.cleanUp()
	<-s.removed
}
