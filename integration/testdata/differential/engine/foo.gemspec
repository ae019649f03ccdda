# An in-app engine, bundled as a path gem (gem "foo", path: "engines/foo").
Gem::Specification.new do |s|
  s.name = "foo"
  s.version = "0.1.0"
  s.summary = "In-app engine with its own migrations"
  s.authors = ["migrun"]
  s.files = Dir["lib/**/*", "db/**/*"]
  s.add_dependency "railties"
end
