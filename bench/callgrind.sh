#!/usr/bin/env bash
# Instruction counts (Ir) of the hot path under callgrind: N messages of the tick-to-order
# stream (real Binance depth frames, Upbit KRW-BTC / KRW-USDT books; parse → engine →
# encode+sign of any orders), collected only inside `callgrind_measured`, so data loading
# and warm-up are excluded. The input and the nonces are deterministic, so Ir is stable
# across runs (unlike time on a shared VM): compare it between commits to see regressions.
#
#   bench/callgrind.sh [N]        (default N = 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -p kimp-bench >&2
BIN="$CARGO_TARGET_DIR/release/kimp-bench"
OUT="$(mktemp -d)"
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
  --collect-atstart=no --toggle-collect='*callgrind_measured*' \
  "$BIN" --callgrind "$N" >"$OUT/stdout" 2>"$OUT/stderr"
IR=$(grep -E '^(summary|totals):' "$OUT/cg.out" | head -1 | awk '{print $2}')
cat "$OUT/stdout"
echo "Ir total: $IR for $N messages"
awk -v ir="$IR" -v n="$N" 'BEGIN { printf "Ir per message: %.0f\n", ir / n }'
echo "{\"messages\":$N,\"ir_total\":$IR,\"ir_per_message\":$(awk -v ir="$IR" -v n="$N" 'BEGIN { printf "%.0f", ir / n }')}"
rm -rf "$OUT"
