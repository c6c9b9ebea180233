#!/usr/bin/env bash
# Installs what building and testing Tidings needs, and only what is missing; safe to run again.
#
#   scripts/setup.sh          build tools: wasm32 target, cargo-leptos, wasm-bindgen CLI, wasm-opt
#   scripts/setup.sh --test   also the test tools: Playwright (npm), Debian's Chromium and redis-server,
#                             and the openssl command (the HTTPS tests make their certificates with it)
#   scripts/setup.sh --bench  also what `make bench` compares and runs on: Debian's redis-server,
#                             nginx-light and libnginx-mod-nchan
#
# Versions are pinned where a mismatch breaks the build: the wasm-bindgen CLI must equal the
# wasm-bindgen crate in Cargo.lock, cargo-leptos 0.3.11 needs a newer rustc than 1.95, and
# Debian's binaryen (v108) produces WASM that fails to hydrate, so wasm-opt comes from npm.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

# The wasm-bindgen version the lock file resolved.
lock_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 15 minutes on 2 cores)"
  cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
fi

wbg=$(lock_version wasm-bindgen)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg" ]; then
  say "installing wasm-bindgen-cli $wbg (matching Cargo.lock)"
  # --locked fails for this version on rustc 1.95; the fallback resolver picks compatible deps.
  CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo install wasm-bindgen-cli --version "$wbg" --force
fi

npm_ci() { # DIR: install from its package-lock.json unless node_modules is already up to date
  local stamp="$1/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$1/package-lock.json" -nt "$stamp" ]; then
    say "installing npm packages in $1"
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

npm_ci tools

apt_updated=
apt_install() { # PACKAGE: install a Debian package, updating the lists once per run
  say "installing Debian's $1"
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

redis_server() { # the Redis tests and the cluster bench start (and kill) servers of their own
  if ! command -v redis-server >/dev/null; then
    # The service the package may start on install is stopped so none is left running.
    apt_install redis-server
    service redis-server stop >/dev/null 2>&1 || true
  fi
}

if [ "${1:-}" = "--test" ]; then
  npm_ci end2end
  command -v chromium >/dev/null || apt_install chromium
  command -v openssl >/dev/null || apt_install openssl
  redis_server
fi

if [ "${1:-}" = "--bench" ]; then
  redis_server
  # The HTTP section compares Tidings with nginx + nchan, which the bench runs itself (one
  # worker, on a configuration, port and folder of its own). Where they cannot be installed the
  # bench still runs, and its nchan column says why.
  if ! [ -x /usr/sbin/nginx ]; then
    # The service the package may start on install is stopped so none is left running.
    apt_install nginx-light && { service nginx stop >/dev/null 2>&1 || true; } ||
      say "nginx-light could not be installed: make bench will have no nchan figures"
  fi
  if [ -x /usr/sbin/nginx ] && ! [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    apt_install libnginx-mod-nchan ||
      say "libnginx-mod-nchan could not be installed: make bench will have no nchan figures"
  fi
fi

say "tools ready"
