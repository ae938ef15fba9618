# pushgate: the commands a newcomer and CI need.
CARGO ?= cargo

.PHONY: run build build-lto test lint fmt bench bench-peers bench-cluster clean deploy-check e2e conformance compression test-js pusher pusher-sdk demo fuzz soak

## Run a single-node gateway on embedded defaults (ws://127.0.0.1:8080/ws, HTTP API on 127.0.0.1:8081).
## The release profile is tuned for build time (no LTO); benchmarks and the image use
## release-lto (Cargo.toml).
run:
	$(CARGO) run --release -p pushgate -- serve

build:
	$(CARGO) build --release -p pushgate

## The build of the container image and the benchmarks: thin LTO (target/release-lto/pushgate).
build-lto:
	$(CARGO) build --profile release-lto -p pushgate

## Everything CI checks: formatting, clippy with warnings denied, every test (the
## cluster tests need redis-server, which tests/deps.sh installs), then the deploy
## artifacts and the haproxy end-to-end test (after the cargo tests).
test: lint
	bash tests/deps.sh
	$(CARGO) test --workspace
	$(MAKE) deploy-check
	$(MAKE) e2e
	$(MAKE) conformance
	$(MAKE) compression
	$(MAKE) test-js
	$(MAKE) pusher
	$(MAKE) pusher-sdk

## The Pusher HTTP API and webhooks with Pusher's Python server SDK (`pusher`, PyPI, in a
## venv under tests/pusher/) against the release binary (tests/pusher/sdk.sh, docs/pusher.md).
pusher-sdk:
	bash tests/pusher/sdk.sh

## The JS client (clients/js, docs/clients.md): dist/ rebuilt from src/ must equal the
## committed one, then unit tests, Node and headless-Chromium tests against the release
## binary, and the browser chaos test (two nodes on Redis behind haproxy, about a minute).
## clients/js/test/deps.sh installs chromium (Debian's), haproxy, redis-server and the npm packages.
test-js:
	bash clients/js/test/deps.sh
	cd clients/js && npm run build --silent && git diff --exit-code --stat -- dist/
	cd clients/js && npm test

## The Pusher protocol with clients we did not write (docs/pusher.md): pusher-js in Node
## and headless Chromium, Laravel Echo in Chromium, the pusher server SDK's signatures,
## against the release binary. tests/pusher/run.sh installs chromium and the npm packages.
pusher:
	bash tests/pusher/run.sh

## The live-feed example page and a gateway on 127.0.0.1 (page: http://127.0.0.1:8090/).
demo:
	bash examples/live-feed/demo.sh

## Deploy artifacts checked with promtool, haproxy -c, nginx -t, JSON/YAML parsing (deploy/check.sh).
deploy-check:
	bash deploy/check.sh

## haproxy in front of two nodes: connect, publish, drain one node, reconnect (tests/e2e/).
e2e:
	bash tests/e2e/haproxy_drain.sh

## WebSocket conformance: the Autobahn cases (kosoku) against the real binary (docs/conformance.md).
conformance:
	bash tests/autobahn/run.sh

## permessage-deflate with Python `websockets` against the real binary (tests/compression/).
compression:
	bash tests/compression/run.sh

## Every fuzz target for 60 s each (FUZZ_SECONDS=N to change); needs nightly and
## cargo-fuzz; not part of `make test` (docs/conformance.md, "Fuzzing").
fuzz:
	bash fuzz/run.sh

## Formatting, clippy with warnings denied, no unused dependency (tests/unused_deps.sh),
## and the fuzz targets still compile (on stable; `make fuzz` runs them with nightly).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash tests/unused_deps.sh
	rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins

fmt:
	$(CARGO) fmt --all

## Benchmarks (see docs/benchmarks.md): pushgate alone, and side by side with the peers.
bench:
	bash bench/run.sh

bench-peers:
	bash bench/run-peers.sh

## Three nodes joined through Redis: publications/s through Redis, latency against one
## node, 36,000 connections over three processes (docs/benchmarks.md, "Cluster (Redis)").
bench-cluster:
	bash bench/cluster.sh

## 30 minutes at 19,000 connections with steady publishing; RSS and descriptors sampled
## every minute; fails on any loss or on 5 % growth (docs/benchmarks.md, "Soak"). Not in CI.
soak:
	bash bench/soak.sh

clean:
	$(CARGO) clean
