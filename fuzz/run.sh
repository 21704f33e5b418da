#!/usr/bin/env bash
# Runs fuzz targets for a number of executions each and records what ran in
# fuzz/RESULTS.md (not part of CI's test run).
#   fuzz/run.sh [RUNS_PER_TARGET] [TARGET...]     (default 10000000, every target)
# MAX_TIME=SECONDS stops each target after that long (the row then records how many
# executions it reached). SANITIZER=none runs without AddressSanitizer (several times faster; Rust code needs it
# only for the few unsafe blocks), for long campaigns; the default is address.
# Needs cargo-fuzz (cargo install cargo-fuzz) and the nightly toolchain. Seeds come from
# fuzz/make_seeds.sh; crashes land in fuzz/artifacts/TARGET/ and become regression tests
# in tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
shift || true
all=(descriptor sparse stream vhd vhdx contract cowd sesparse vhdx_log tar ovf manifest hive initramfs vhd_locator vhdx_locator volumes lvm_text xfs sequential)
targets=("${@:-${all[@]}}")
[ -d corpus/contract ] || ./make_seeds.sh
for t in "${targets[@]}"; do
  # Image targets do a whole open, read, info and check per input: at 256 KiB they run
  # several times as many inputs as at 1 MiB, and every table kind fits.
  max_len=262144
  case "$t" in
    # A VHDX log region, whole.
    vhdx_log) max_len=6291456 ;;
    # Whole disks and file systems in the paged encoding (fuzz/page_image.py): the 16 MiB
    # XFS seeds are 60 KiB to 1.7 MiB of pages.
    volumes|xfs) max_len=2097152 ;;
    # Regions and blocks of a VHDX sit at whole MiB: the compact seeds are 2 MiB (and 32
    # bytes of ranges in front for the contract target).
    vhdx|contract) max_len=2097184 ;;
    lvm_text) max_len=65536 ;;
    descriptor|manifest) max_len=8192 ;;
    ovf|vhd_locator|vhdx_locator) max_len=65536 ;;
  esac
  echo "== $t: $runs runs"
  log=$(mktemp)
  start=$(date +%s)
  status=ok
  # libFuzzer holds the whole corpus in memory: the large inputs of volumes and xfs
  # grew it past 1 GiB when they were raw 6 MiB images (an "oom-" artifact that was the
  # corpus, not the input; the images they decode are up to 16 MiB too), and the 2 MiB
  # VHDX inputs grow it by about 20 MB a minute.
  rss=1024
  case "$t" in volumes|xfs|vhdx|contract) rss=4096 ;; esac
  # -reload=0: one process per target, so there is nothing to pick up from the corpus
  # folder; rereading and hashing it every second took 12% of the volumes target.
  cargo +nightly fuzz run -s "${SANITIZER:-address}" "$t" "corpus/$t" -- -runs="$runs" -max_len="$max_len" \
    -rss_limit_mb="$rss" -reload=0 -timeout=10 -max_total_time="${MAX_TIME:-0}" -print_final_stats=1 >"$log" 2>&1 || status=FAILED
  secs=$(( $(date +%s) - start ))
  execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -n 1)
  tail -n 12 "$log"
  printf '| %s | %s | %s | %s s | %s | %s |\n' "$(date -u +%F)" "$t" "${execs:-?}" "$secs" "${SANITIZER:-address}" "$status" >> RESULTS.md
  rm -f "$log"
done
