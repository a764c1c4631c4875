# weft's build. `make test` is the one test command (CI runs exactly it).
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X weft/internal/version.Version=$(VERSION) -X weft/internal/version.Commit=$(COMMIT)

.PHONY: build test unit lab lint crossbuild bench dist fuzz screenshots

# Every target weft ships for; `make crossbuild` (part of `make test`) builds
# each and vets the tree for every GOOS, so a Linux-only import in shared
# code fails CI, not a user on Windows or macOS.
TARGETS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
DISTDIR ?= dist/out

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/weft ./cmd/weft

# Unit tests run with the race detector; lab tests (real weft processes in
# network namespaces) need root and skip with a message without it.
# -timeout is a guard against a hang, per package: cmd/weft's lab tests
# take about 8 minutes on a quiet 2-core machine and 14 under load.
test: lint crossbuild
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

# Every fuzz target for FUZZTIME each (about two minutes in all); see
# .ci/fuzz, and docs/security.md for fuzzing one target for longer.
# A count, not a duration: with a wall-clock -fuzztime, Go 1.26's fuzzing
# coordinator can report a bare "context deadline exceeded" failure when
# the time runs out under load (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 300x
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

crossbuild:
	@set -e; for t in $(TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; echo "build $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -o /dev/null ./cmd/weft; \
	done
	@set -e; for os in darwin windows; do echo "vet GOOS=$$os"; GOOS=$$os $(GO) vet ./...; done

# Release binaries for every target, stamped with the version, and their
# SHA-256 sums in $(DISTDIR)/SHA256SUMS (check with sha256sum -c).
dist:
	@rm -rf $(DISTDIR) && mkdir -p $(DISTDIR)
	@set -e; for t in $(TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
	  out=$(DISTDIR)/weft-$(VERSION)-$$os-$$arch$$ext; echo "$$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/weft; \
	done
	cd $(DISTDIR) && sha256sum weft-* > SHA256SUMS

# The console's screenshots in docs/console/, taken by the browser tests
# in Chromium (a plain test run saves none).
screenshots:
	WEFT_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run 'Browser' ./internal/console/browsertest

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...
