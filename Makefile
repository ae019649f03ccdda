# migrun: the commands the README and CI use.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The one build recipe: the Dockerfile runs `make build` too, so they cannot drift.
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
BIN ?= bin/migrun

.PHONY: build test check demo fuzz clean

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/migrun

# The test command: unit and integration tests (throwaway PostgreSQL and
# MariaDB servers and a real Rails app), with the race detector.
test:
	go test -race -count=1 -timeout 30m ./...
	cd deploy && go test -count=1 ./...

# Static checks CI runs besides the tests (staticcheck: go install honnef.co/go/tools/cmd/staticcheck@latest).
check:
	go vet ./...
	cd deploy && go vet ./...
	staticcheck ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Run migrun once with no database server: a sqlite3 file lock and a sample command.
demo: build
	@mkdir -p tmp
	DATABASE_URL=sqlite3:tmp/demo.sqlite3 $(BIN) run -- sh -c 'echo "== 20240101000000 CreateUsers: migrated (0.0046s) ==="'

# A short run of every fuzz test, seeded from testdata/fuzz.
# A count of executions, not a duration: a time-bounded run on a loaded machine
# can end in "context deadline exceeded" while a worker is still busy.
FUZZTIME ?= 20000x
fuzz:
	go test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./dburl
	go test -run='^$$' -fuzz='^FuzzCapture$$' -fuzztime=$(FUZZTIME) ./runner
	go test -run='^$$' -fuzz='^FuzzParseMigrations$$' -fuzztime=$(FUZZTIME) ./rails
	go test -run='^$$' -fuzz='^FuzzParseMigrationFilename$$' -fuzztime=$(FUZZTIME) ./rails
	go test -run='^$$' -fuzz='^FuzzMigrationFilename$$' -fuzztime=$(FUZZTIME) ./rails
	go test -run='^$$' -fuzz='^FuzzRubyToI$$' -fuzztime=$(FUZZTIME) ./rails
	go test -run='^$$' -fuzz='^FuzzBuildMessage$$' -fuzztime=$(FUZZTIME) ./notify

# The benchmark suite (not part of test or CI): throwaway servers, a few minutes; writes BENCHMARKS.md.
.PHONY: bench
bench: build
	go run ./bench -migrun $(BIN) -out BENCHMARKS.md

clean:
	rm -rf bin tmp
