# waage: `make test` is what CI runs (.ci/run) and what a newcomer runs on a fresh machine.
GO ?= go

.PHONY: test test-deps vet fmt-check unit build bench demo

test: test-deps vet fmt-check unit

test-deps:
	./scripts/test-deps.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

build:
	$(GO) build -o waage ./cmd/waage

bench:
	bash bench/l7.sh

demo:
	$(GO) run ./cmd/waage demo
