# twgroupd — see README.md. `make test` is what CI runs (.ci/run).
GO      ?= go
PKGS    := ./...
FUZZTIME ?= 10s
BIN     := bin/twgroupd

.PHONY: all build test race fuzz bench bench-costs bench-chain lint run clean crash abuse net

all: build

build:
	$(GO) build -o $(BIN) ./cmd/twgroupd

# The whole suite: unit, multi-node on 127.0.0.1, subprocess CLI tests.
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 8m $(PKGS)

# SIGKILL of a sending node, 100 times (make test runs a few), and the
# fsync count per DM (needs strace).
crash:
	TWGROUPD_CRASH_ITERATIONS=100 $(GO) test -count=1 -timeout 15m -v -run 'TestSendSurvivesSIGKILL|TestSyncsPerDM' ./internal/devnet/

race:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# Runs every fuzz target for FUZZTIME each (go test allows one -fuzz target per run).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# The figures of docs/engine.md for issue 12 (ratios within one run):
# trial decryption and retries, post decoding, hot paths with pending posts,
# catch-up of a 1000-post swarm.
bench-costs:
	$(GO) test -run '^$$' -bench 'TrialDecryption|RetryDecryption|DecodePost' -count 5 ./internal/twproto
	$(GO) test -run '^$$' -bench 'PendingHotPaths' -benchtime 20x -count 5 ./dm
	$(GO) test -run '^$$' -bench 'Fetch1000Posts' -benchmem -benchtime 2x -count 3 ./internal/swarm

# The chain sync figure of docs/chain.md: 10 000 blocks from one local peer
# (building the chain takes about a minute).
bench-chain:
	CHAIN_BENCH_BLOCKS=10000 $(GO) test -run '^$$' -bench SyncFromOnePeer -benchtime 1x -timeout 15m ./internal/chainsync

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Issue #11's attacks at full size against a local victim node (127.0.0.0/8
# only, bounded, stops by itself within 10 minutes): RSS peak, RPC p99 and
# legitimate acceptance per row (docs/rpc.md "Limits"). ABUSE_FLAGS=--small
# for a quick run, --only=port,batch for some rows.
abuse: build
	./$(BIN) abuse $(ABUSE_FLAGS)

# The main job: a local network of nodes doing group chat.
run: build
	./$(BIN) devnet

# The scale scenario: NODES nodes on 127.0.0.10.., everyone follows everyone, a
# group of all, a message, churn; prints timings, sockets and RSS per node
# (docs/swarm.md "Scale"). Bounded: each phase stops after NET_TIMEOUT.
NODES ?= 100
NET_TIMEOUT ?= 120s
net: build
	./$(BIN) devnet --nodes $(NODES) --scenario scale --timeout $(NET_TIMEOUT)

clean:
	rm -rf bin
