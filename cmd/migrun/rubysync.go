package main

import (
	"sync"

	"github.com/migrun/migrun/rails"
)

// rubySync is a run's Ruby sync file (rails.SyncOutput), kept off the
// critical path: creating a file on the temp dir's file system, and
// removing it, cost a tenth of a millisecond to more than one each (ext4
// looks for an inode not deleted recently), so it is written in the
// background from the start of the run, added to the command's RUBYOPT
// when the command is about to start, and removed in the background once
// no attempt follows, while the lock is released and the result reported.
// migrun waits for the removal before it exits. A nil *rubySync (with
// MIGRUN_RUBY_SYNC=false) does nothing.
type rubySync struct {
	written chan struct{} // closed once SyncOutput returned
	opt     string        // RUBYOPT with -r<file>
	remove  func()
	err     error

	removeOnce sync.Once
	removed    chan struct{} // closed once the file is gone
}

// startRubySync starts writing the sync file; rubyopt is the command's
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

// cleanUp starts removing the file, once it is written; no command may
// start after it. It may be called any number of times.
func (s *rubySync) cleanUp() {
	if s == nil {
		return
	}
	s.removeOnce.Do(func() {
		go func() {
			defer close(s.removed)
			<-s.written
			if s.remove != nil {
				s.remove()
			}
		}()
	})
}

// wait removes the file (if cleanUp has not started that yet) and waits
// until it is gone.
func (s *rubySync) wait() {
	if s == nil {
		return
	}
	s.cleanUp()
	<-s.removed
}
