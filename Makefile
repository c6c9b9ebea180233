# Tidings: the two commands are `make run` and `make test`; see README.md.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# cargo-leptos sets this while compiling; setting it for every cargo call keeps plain cargo
# (tests, clippy) from rebuilding Leptos with a different value, and back again.
export LEPTOS_OUTPUT_NAME := tidings
# wasm-opt from npm (tools/) must come before any other on PATH; cargo's bin holds the rest.
export PATH := $(CURDIR)/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

ADDR ?= 127.0.0.1:3000
# The release site: brotli and gzip copies of every file made at build time (served as the
# browser accepts them), JS, WASM and CSS named after their content (`hash-files`).
SITE_BUILD := cargo leptos build --release --precompress
# What cargo-leptos puts in RUSTFLAGS for release builds (`always-erase-components` in
# Cargo.toml): the bench builds with the same, so the two share release artifacts, and the
# server it measures is the one `make build` makes, which matches its site.
RELEASE_RUSTFLAGS := --cfg erase_components
SERVER_PACKAGES := -p tidings-hub -p tidings-server -p tidings-app -p tidings-bench -p tidings-testkit

.PHONY: help setup build run cluster dev test check unit e2e bench screenshots clean

help:
	@echo "make run      install what is missing, build the release site and serve it on $(ADDR)"
	@echo "make test     everything CI runs: fmt, clippy, Rust tests, browser tests"
	@echo "make build    release build of the server and the site"
	@echo "make cluster  three nodes on one Redis (nginx in front on 127.0.0.1:3000 if installed)"
	@echo "make dev      rebuild and reload on every change (cargo leptos watch)"
	@echo "make bench    measure the hub core, the release server, a cluster on Redis, HTTP against nginx + nchan, and a browser's first load (minutes; ONLY=core|server|cluster|http|browser)"

setup:
	scripts/setup.sh

build: setup
	$(SITE_BUILD)

# Serves the release build. TIDINGS_ADDR or ADDR=... changes the address.
run: build
	TIDINGS_ADDR=$${TIDINGS_ADDR:-$(ADDR)} TIDINGS_SITE_ROOT=target/site target/release/tidings

# Three nodes sharing one local Redis, in the foreground; Ctrl-C stops them. See docs/cluster.md.
cluster: build
	scripts/cluster.sh

dev: setup
	cargo leptos watch

test: check unit e2e

check:
	cargo fmt --all --check
	cargo clippy $(SERVER_PACKAGES) --all-targets --locked -- -D warnings
# The hub's modules use only modules of lower layers (the table in hub/src/lib.rs's docs).
	cargo test -p tidings-hub --test layers --locked
	scripts/setup.sh >/dev/null
	cargo clippy -p tidings-frontend --target wasm32-unknown-unknown --locked -- -D warnings

# The hub's Redis history tests need redis-server, which `setup.sh --test` installs.
unit:
	scripts/setup.sh --test >/dev/null
	cargo test $(SERVER_PACKAGES) --locked

# The browser suite runs the release build, what `make run` serves (release-only failures, such
# as wasm-opt's, are caught here); each test starts its own server on a free port.
e2e:
	scripts/setup.sh --test
	$(SITE_BUILD)
	cd end2end && TIDINGS_BIN=$(CURDIR)/target/release/tidings TIDINGS_SITE_ROOT=$(CURDIR)/target/site npx playwright test

# Refreshes the README's page screenshots (docs/*.png), taken by the browser suite.
screenshots:
	scripts/setup.sh --test
	$(SITE_BUILD)
	cd end2end && TIDINGS_SCREENSHOTS=1 TIDINGS_BIN=$(CURDIR)/target/release/tidings TIDINGS_SITE_ROOT=$(CURDIR)/target/site npx playwright test tests/pages.spec.ts

# Performance figures, medians, in a table (release builds). The hub core in-process: durable
# publishes/s, CPU per delivered event, memory per idle subscriber, publish latency with 30,000
# templates, subscribe time for 1000 selectors, replay throughput. Then the release server
# (built first) as a child: its RSS before, during and after rounds of 19,000 connections, and
# with 30,000 templates. Then release nodes on a redis-server of their own: publishes/s over
# HTTP (appendfsync everysec, always), publish-to-receive latency across 3 nodes (up to 2000
# subscribers each, up to 1000 updates/s), catch-up after a 5 s Redis outage. Then, over HTTP,
# the release server against nginx + nchan (installed by `setup.sh --bench`), each alone on
# CPU 0 and the load generator on CPU 1: idle subscribers and their memory, CPU per delivered
# event, publish-to-receive latency, publishes/s, replay; and the release server on HTTPS (a
# certificate made by openssl at bench time) against itself on HTTP: idle subscribers' memory,
# burst CPU per delivered event, idle subscribers as HTTP/2 streams. Not part of `make test`: numbers are reported, never asserted.
# Last, the browser's first load of `/` (the release site in Chromium, by the Playwright script
# end2end/bench/first-load.spec.ts, outside `make e2e`): the WASM bundle's size, the bytes a cold
# load transfers, the time until the first live event shows.
# ONLY=core, ONLY=server, ONLY=cluster, ONLY=http or ONLY=browser runs that section alone
# (`make bench ONLY=http`).
ONLY ?=
bench:
	scripts/setup.sh --bench
	if [ -z "$(ONLY)" ] || [ "$(ONLY)" = browser ]; then scripts/setup.sh --test >/dev/null; fi
	scripts/setup.sh >/dev/null
	$(SITE_BUILD)
	RUSTFLAGS="$(RELEASE_RUSTFLAGS)" cargo run --release --locked -p tidings-bench -- $(ONLY)

clean:
	cargo clean
	rm -rf end2end/node_modules tools/node_modules end2end/test-results
