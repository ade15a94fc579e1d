#!/usr/bin/env bash
# Run every benchmark and save its JSON to bench/results/<name>.json.
# Usage: bench/run_all.sh            (about 12 minutes on 2 cores)
#        QUICK=1 bench/run_all.sh    (short windows, to check that all run)
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False
export BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-bench/results}"
# The Python with requirements-dev.txt installed; .venv if there is one.
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
mkdir -p "$BENCH_RESULTS_DIR"

if [[ "${QUICK:-0}" == "1" ]]; then
  latency=(--duration-s 8); throughput=(--duration-s 2); tokens=(--duration-s 20 --repeats 2)
  scale=(--sessions 10 --warmup-s 2 --window-s 5); browser=(--probes 4 --camera-s 3)
  iterations=50
else
  latency=(--duration-s 60); throughput=(--duration-s 5); tokens=(--duration-s 120)
  scale=(--sessions 10 50 100); browser=(--probes 20 --camera-s 10)
  iterations=300
fi

echo "== machine"; nproc; free -h; grep -m1 "model name" /proc/cpuinfo; uptime
echo "== codec";   $PY bench/bench_codec.py --iterations "$iterations" | tee "$BENCH_RESULTS_DIR/codec.txt"
$PY bench/relay_cost.py --iterations "$iterations"
$PY bench/latency_slow_model.py "${latency[@]}"
$PY bench/throughput.py "${throughput[@]}"
$PY bench/tokens_reconnect.py "${tokens[@]}"
$PY bench/scale.py "${scale[@]}"
$PY bench/browser_latency.py "${browser[@]}"
echo "== done: results in $BENCH_RESULTS_DIR"
