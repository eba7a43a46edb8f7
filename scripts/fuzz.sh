#!/usr/bin/env bash
# Builds Rivulet's fuzz targets (fuzz/) with libFuzzer on the stable toolchain and runs each
# one for a bounded time against the checked-in corpus. Exits non-zero if any target crashes,
# and prints where the crashing input was written. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# FUZZ_ARGS adds libFuzzer options, e.g. FUZZ_ARGS="-max_len=65536 -rss_limit_mb=512".
#
# Only plain cargo is needed: no cargo-fuzz, no nightly. The flags below are the coverage
# instrumentation cargo-fuzz passes; without a sanitizer (which needs nightly), since Rivulet
# forbids unsafe code. New inputs the fuzzer finds go to a temporary directory, never into
# fuzz/corpus.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(request_decode batch_validate amqp_frame sasl certificate_subject)
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps these flags off build scripts and proc macros, as cargo-fuzz does.
export RUSTFLAGS="${RUSTFLAGS:-} --cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cforce-frame-pointers"
export CARGO_TARGET_DIR="$PWD/target"

printf 'building fuzz targets (%s)\n' "${targets[*]}"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --release --locked --target "$host" "${bins[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p artifacts
failed=()
for t in "${targets[@]}"; do
  printf '\n== fuzzing %s for %ss\n' "$t" "$seconds"
  mkdir -p "$work/$t" "artifacts/$t"
  touch "$work/$t.start"
  # The first corpus directory receives new inputs; the checked-in one is only read.
  if ! "target/$host/release/$t" \
      -max_total_time="$seconds" \
      -print_final_stats=1 \
      -timeout=25 \
      -artifact_prefix="$PWD/artifacts/$t/" \
      ${FUZZ_ARGS:-} \
      "$work/$t" "corpus/$t" 2>"$work/$t.log"; then
    failed+=("$t")
    tail -n 60 "$work/$t.log"
    printf '\n%s FAILED. Crashing input(s) written by this run:\n' "$t"
    find "$PWD/artifacts/$t" -type f -newer "$work/$t.start" | sed 's/^/  /'
    cp "$work/$t.log" "artifacts/$t/fuzz-$(date +%Y%m%dT%H%M%S).log"
    printf 'Full log: %s\n' "$(ls -t "$PWD/artifacts/$t"/fuzz-*.log | head -n 1)"
    printf 'Reproduce with: %s\n' "fuzz/target/$host/release/$t fuzz/artifacts/$t/<file>"
  else
    grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+DONE|stat::)' "$work/$t.log" || true
    printf '%s: %s new inputs found this run (not kept)\n' "$t" "$(ls "$work/$t" | wc -l)"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  printf '\nfuzzing failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '\nfuzzing passed: %s\n' "${targets[*]}"
