require "foo/engine"
