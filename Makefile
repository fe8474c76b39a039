# twgroupd — see README.md. `make test` is what CI runs (.ci/run).
GO      ?= go
PKGS    := ./...
FUZZTIME ?= 10s
BIN     := bin/twgroupd

.PHONY: all build test race fuzz bench lint run net clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/twgroupd

# The whole suite: unit, multi-node on 127.0.0.1, subprocess CLI tests.
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 8m $(PKGS)

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

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# The main job: a local network of nodes doing group chat.
run: build
	./$(BIN) devnet

# The scale scenario: NODES nodes on 127.0.0.10.., everyone follows everyone, a
# group of all, a message, churn; prints timings, sockets and RSS per node
# (docs/swarm.md). Bounded: each phase stops after NET_TIMEOUT.
NODES ?= 100
NET_TIMEOUT ?= 120s
net: build
	./$(BIN) devnet --nodes $(NODES) --scenario scale --timeout $(NET_TIMEOUT)

clean:
	rm -rf bin
