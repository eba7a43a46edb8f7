#!/usr/bin/env bash
# Runs Rivulet's whole test suite on a fresh machine: installs what the client
# compatibility tests need (kcat from Debian, kafka-python and confluent-kafka in ./.venv, kafkajs in
# tests/clients/node_modules, Chromium from Debian for the console, the KurrentDB Rust client
# program in tests/clients/kurrentdb-rust), checks formatting and lints, runs every test, then runs the
# fuzz targets for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "client tools"
if ! command -v kcat >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
  else
    echo "kcat is missing and cannot be installed here; its tests will fail" >&2
  fi
fi
# The console's browser tests drive Debian's Chromium (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing and cannot be installed here; the console tests will be skipped" >&2
  fi
fi
# librdkafka (the CLI, the benchmark and the Rust test clients) is built with OpenSSL.
if ! pkg-config --exists openssl 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
  else
    echo "OpenSSL headers are missing (apt-get install libssl-dev pkg-config); the build will fail" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/clients/requirements.txt
if command -v npm >/dev/null 2>&1; then
  (cd tests/clients && npm ci --silent --no-audit --no-fund)
else
  echo "npm is missing; the kafkajs tests will fail" >&2
fi

# The official KurrentDB Rust client as a test program (its own lock file and target dir).
cargo build --locked --quiet --manifest-path tests/clients/kurrentdb-rust/Cargo.toml

step "format"
cargo fmt --all -- --check

# --all-features builds `rivulet bench`'s peer drivers (feature `peers`) too; their tests run
# against the NATS (127.0.0.1:4222) and RabbitMQ (127.0.0.1:5672) servers of this machine.
step "lint"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "tests"
cargo test --workspace --all-features --locked

step "fuzz (bounded)"
./scripts/fuzz.sh 30
