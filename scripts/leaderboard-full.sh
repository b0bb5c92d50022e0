#!/usr/bin/env bash
# The full-size leaderboard (issue 25, item 3), for a machine with a GPU: the suite's `full` snapshots
# (trained on the CPU with one torch thread, so their hashes can be recorded and checked anywhere),
# then every built-in estimator on them with the runs on DEVICE. The committed board is the CPU-sized
# one (`results/leaderboard.md`); this writes the full one beside it, never over it.
#
#   scripts/leaderboard-full.sh DATA_DIR [OUT]     # OUT default: results/leaderboard-full.json
#
# Environment: N / SLOW_N (draws per run, default 10000 / 1000: the paper's n), MAX_COST (default
# 2000 forward passes per draw: IndeCateR on the HVAE is 1441), DEVICE (default cuda), SNAPSHOTS (default snapshots/suite-full), RUNS (default
# runs-leaderboard-full), RECORD=1 (write the snapshots' hashes into benchmarks/suite/suite.json's
# `full` entries the first time). Not run yet: no GPU was lent to the task that wrote it; each step is
# the same command as the CPU board's, which the tests run at a tiny size.
set -euo pipefail
DATA_DIR=${1:?usage: scripts/leaderboard-full.sh DATA_DIR [OUT]}
OUT=${2:-results/leaderboard-full.json}
DEVICE=${DEVICE:-cuda}
SNAPSHOTS=${SNAPSHOTS:-snapshots/suite-full}
RUNS=${RUNS:-runs-leaderboard-full}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
biasvar leaderboard snapshots --size full --out "$SNAPSHOTS" --data-dir "$DATA_DIR" ${RECORD:+--record}
biasvar leaderboard board --size full --snapshots "$SNAPSHOTS" --runs-dir "$RUNS" --device "$DEVICE" \
  --n "${N:-10000}" --slow-n "${SLOW_N:-1000}" --max-cost "${MAX_COST:-2000}" --out "$OUT"
