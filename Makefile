# weft's build. `make test` is the one test command (CI runs exactly it).
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X weft/internal/version.Version=$(VERSION) -X weft/internal/version.Commit=$(COMMIT)

.PHONY: build test unit lab lint bench

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/weft ./cmd/weft

# Unit tests run with the race detector; lab tests (real weft processes in
# network namespaces) need root and skip with a message without it.
test: lint
	$(GO) test -race -count=1 -timeout 15m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...
