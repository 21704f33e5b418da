#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (not part of CI's test run).
#   fuzz/run.sh [SECONDS_PER_TARGET]     (default 120)
# Needs cargo-fuzz (cargo install cargo-fuzz) and a nightly toolchain (rustup
# toolchain install nightly). Seeds come from fuzz/make_seeds.sh; crashes land in
# fuzz/artifacts/TARGET/ and become regression tests in tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-120}
[ -d corpus/sparse ] || ./make_seeds.sh
for t in descriptor sparse stream vhd vhdx vhd_locator vhdx_locator; do
  max_len=1048576
  [ "$t" = vhdx ] && max_len=6291456
  [ "$t" = descriptor ] && max_len=8192
  case "$t" in *_locator) max_len=65536; mkdir -p "corpus/$t";; esac
  echo "== $t for ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len="$max_len" \
    -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 2>&1 | tail -n 12
done
