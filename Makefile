# pushgate: the commands a newcomer and CI need.
CARGO ?= cargo

.PHONY: run build test lint fmt bench bench-peers clean

## Run a single-node gateway on embedded defaults (ws://127.0.0.1:8080/ws, HTTP API on 127.0.0.1:8081).
run:
	$(CARGO) run --release -p pushgate -- serve

build:
	$(CARGO) build --release -p pushgate

## Everything CI checks: formatting, clippy with warnings denied, every test.
test: lint
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks (see docs/benchmarks.md): pushgate alone, and side by side with the peers.
bench:
	bash bench/run.sh

bench-peers:
	bash bench/run-peers.sh

clean:
	$(CARGO) clean
