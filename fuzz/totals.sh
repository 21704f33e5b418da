#!/usr/bin/env bash
# Sums the executions recorded in fuzz/RESULTS.md per target (every run, any sanitizer),
# against the 10 million each parser target is to reach over the work.
set -euo pipefail
cd "$(dirname "$0")"
awk -F'|' '
  /^\| 20/ {
    t = $3; gsub(/ /, "", t); n = $4; gsub(/ /, "", n)
    if (n ~ /^[0-9]+$/) { runs[t] += n }
    if ($7 !~ /ok/) { failed[t] = 1 }
  }
  END {
    printf "| target | executions in all | 10 million reached |\n|---|---|---|\n"
    for (t in runs) {
      printf "| %s | %d | %s%s |\n", t, runs[t], (runs[t] >= 10000000 ? "yes" : "no"), (t in failed ? " (a run failed)" : "")
    }
  }' RESULTS.md | { read -r h; read -r s; echo "$h"; echo "$s"; sort; }
