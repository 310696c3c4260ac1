#!/usr/bin/env bash
# Creates (once) a venv with nautilus_trader and runs nautilus_book.py on the deltas that
# `kimp-bench --export-deltas` wrote. Not part of CI. The venv (~1 GB) lives outside the
# repository: $KIMP_BENCH_VENV, default ~/.cache/kimp-bench/nautilus-venv.
#
#   bench/peers/run_nautilus.sh DELTAS_FILE OUT_JSON [REPS]
set -euo pipefail
DELTAS="$1"; OUT="$2"; REPS="${3:-3}"
PY="${KIMP_BENCH_PYTHON:-python3}"
VENV="${KIMP_BENCH_VENV:-$HOME/.cache/kimp-bench/nautilus-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet nautilus_trader
fi
"$VENV/bin/python" "$(dirname "$0")/nautilus_book.py" "$DELTAS" "$REPS" | tee /dev/stderr | tail -1 > "$OUT"
