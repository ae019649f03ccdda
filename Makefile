# migrun: the commands the README and CI use.
SHELL := bash
# Go tools scripts/deps installs (helm, kustomize, staticcheck, actionlint).
export PATH := $(shell go env GOPATH)/bin:$(PATH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The one build recipe: the Dockerfile and `make release` run `make build`
# too (with GOOS and GOARCH set), so they cannot drift.
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
BIN ?= bin/migrun
# The target platform; this machine's unless given (make build GOARCH=arm64).
GOOS ?= $(shell go env GOOS)
GOARCH ?= $(shell go env GOARCH)

.PHONY: build test check demo fuzz clean release

build:
	CGO_ENABLED=0 GOOS=$(GOOS) GOARCH=$(GOARCH) go build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/migrun

# The release: a static binary per platform, each built by `make build`,
# and their SHA-256 checksums, in $(DIST). CI runs it on a v* tag
# (.github/workflows/ci.yml, RELEASING.md); deploy/release_test.go runs it
# into a temporary directory and checks what it built.
# darwin is not released: runner/ uses Linux-only process APIs (prctl's
# child subreaper, Pdeathsig, waitid, F_SETPIPE_SZ), so `GOOS=darwin go
# build ./...` fails. migrun runs in Linux containers; on a Mac, run the image.
DIST ?= dist
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64
release:
	@case "$(VERSION)" in *dirty*) echo "make release: VERSION $(VERSION) names uncommitted changes; commit and tag first (or set VERSION=)" >&2; exit 1;; esac
	@echo "make release: darwin/amd64 and darwin/arm64 skipped: runner/ uses Linux-only process APIs (see RELEASING.md)"
	@mkdir -p $(DIST) && rm -f $(DIST)/migrun-* $(DIST)/SHA256SUMS
	@set -e; for p in $(RELEASE_PLATFORMS); do \
	  $(MAKE) --no-print-directory build GOOS=$${p%/*} GOARCH=$${p#*/} VERSION=$(VERSION) BIN=$(DIST)/migrun-$${p%/*}-$${p#*/}; \
	done
	cd $(DIST) && sha256sum migrun-* > SHA256SUMS

# The test command: unit and integration tests (throwaway PostgreSQL and
# MariaDB servers and a real Rails app), with the race detector.
# It installs what is missing first (scripts/deps), and ends by saying how
# many tests passed, failed and were skipped, and why each was skipped.
test:
	scripts/deps test
	set -o pipefail; go test -race -count=1 -timeout 45m -json ./... | go run ./internal/testreport
	set -o pipefail; (cd deploy && go test -count=1 -json ./...) | go run ./internal/testreport

# Static checks CI runs besides the tests (.ci/run installs the tools:
# staticcheck, and actionlint, which lints .github/workflows and, with
# shellcheck installed, the shell in their run: steps).
check:
	scripts/deps check
	go vet ./...
	cd deploy && go vet ./...
	staticcheck ./...
	cd deploy && staticcheck ./...
	actionlint
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Run migrun once with no database server (a sqlite3 file lock in a temp
# dir) and a sample migration; show the termination log and the Slack
# message a local stand-in received. Leaves nothing behind.
demo: build
	go run ./internal/demo -migrun $(BIN)

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
	go test -run='^$$' -fuzz='^FuzzSQLLiterals$$' -fuzztime=$(FUZZTIME) ./internal/redact

# The benchmark suite (not part of test or CI): throwaway servers, a few minutes; writes BENCHMARKS.md.
.PHONY: bench
bench: build
	go run ./bench -migrun $(BIN) -out BENCHMARKS.md

clean:
	rm -rf bin tmp dist
