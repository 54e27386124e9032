# attune-sensor-agent: build, test and benchmark entry points.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
# COMMIT is stamped too, because the toolchain's own VCS stamp is absent when
# GOFLAGS carries -buildvcs=false (common in CI containers); empty without git.
COMMIT ?= $(shell git describe --always --dirty --abbrev=40 --match=NONE 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.buildCommit=$(COMMIT)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
BIN := attune-sensor-agent

.PHONY: build build-arm64 test test-short lint bench bench-smoke demo clean

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $(BIN) .

build-arm64:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build $(GOFLAGS_BUILD) -o $(BIN)-arm64 .

# test runs every test, service-backed ones included, against real PostgreSQL and
# RabbitMQ (see scripts/with-services.sh for how they are found or started).
test:
	./scripts/ci-deps.sh
	./scripts/with-services.sh go test -race -count=1 -timeout 40m ./...

# test-short skips service-backed tests, for a quick local loop only (CI never uses it).
test-short:
	ATTUNE_TEST_SKIP_SERVICES=1 go test -count=1 ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...

clean:
	rm -f $(BIN) $(BIN)-arm64

# bench measures the items of docs/benchmarks.md and rewrites that page and its
# plots (bench/run.sh; results under bench/out/).
bench:
	./scripts/with-services.sh bench/run.sh

# bench-smoke is CI's quick pass: small N, host architecture only, no bar
# asserted and no docs written; it fails only when an item produced no number.
bench-smoke:
	./scripts/with-services.sh bench/run.sh --smoke

# demo runs the agent against a throw-away database and broker vhost with a
# one-sensor demo pack (demo/packs/demo) and a local stand-in for the Attune
# API that prints every event it receives; Ctrl-C stops and removes it all.
demo:
	./scripts/with-services.sh demo/run.sh

# demo-check is the same demo, non-interactive: it waits for 2 events, stops
# everything and verifies the clean shutdown (TestDemoCheck runs it in make test).
.PHONY: demo-check
demo-check:
	./scripts/with-services.sh demo/run.sh --check
