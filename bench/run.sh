#!/usr/bin/env bash
# The whole benchmark suite in one command (results go to bench/results/):
#   1. build kimp-bench (release, with the `peers` feature = hftbacktest);
#   2. export the pre-parsed Binance diffs and run nautilus_trader on them in a venv
#      (bench/peers/run_nautilus.sh; skipped with KIMP_BENCH_NO_NAUTILUS=1);
#   3. the full run: tick-to-order over 1.2M messages, throughput, peers, runtime RSS and
#      loopback with 1 and 10 coins — nautilus's figure is folded into the same report;
#   4. instruction counts under callgrind (bench/callgrind.sh, 3 runs to show stability).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT=bench/results
mkdir -p "$OUT"
{ lscpu; echo; echo "nproc: $(nproc)"; uname -a; cat /proc/loadavg; rustc -V; } > "$OUT/machine.txt"
cargo build --release -p kimp-bench
BIN="$CARGO_TARGET_DIR/release/kimp-bench"
NAUT=()
if [ "${KIMP_BENCH_NO_NAUTILUS:-0}" != 1 ]; then
  "$BIN" --export-deltas "$OUT/deltas.txt"
  if bench/peers/run_nautilus.sh "$OUT/deltas.txt" "$OUT/nautilus.json" 3; then
    NAUT=(--nautilus "$OUT/nautilus.json")
  else
    echo "nautilus_trader run failed; continuing without it" >&2
  fi
fi
"$BIN" --full --json --report "$OUT/full.json" "${NAUT[@]}" | tee "$OUT/full.txt"
for i in 1 2 3; do bench/callgrind.sh 20000 | tail -1; done | tee "$OUT/callgrind.txt"
rm -f "$OUT/deltas.txt"
