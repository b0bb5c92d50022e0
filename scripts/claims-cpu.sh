#!/usr/bin/env bash
# The claim-deciding subset of the Fig. 1 / Fig. 4 protocol at n = 10^4, on the CPU, resumable
# (issue 22, item 3: the paper's claims decided without a GPU). What it runs, in the order that
# decides the most claims first:
#   reference rf(M=4); zgr; gs-st(t=0.01); gs(t=0.01); st; st(t=2); gs-st(t=1); gr-mc(M=100,t=0.01);
#   gr-mc(M=10,t=0.01); gr-mc(M=100,t=0.0194); then t = 0.141 and t = 1 of gs-st, gr-mc(M=10),
#   gr-mc(M=100), gs; then the Fig. 4 endpoints st-zgr(alpha=0.5,t=1), st-zgr(alpha=0.5,t=2), st(t=1.5).
# The snapshot is the Fig. 1 VAE (10 epochs of rf(M=4), batch 50, Adam 1e-4, MNIST-B, seed SEED),
# trained on the first call (about 5 min on one core) and reused after. Every finished run is added to
# the snapshot's statistics store (<RUNS>/<snapshot>/gram-store.hdf5, a few MB: commit it) by the
# sweep's last step; rerun the same command to resume (complete runs are kept, a partial run resumes
# from its last saved block).
#
#   scripts/claims-cpu.sh RUNS_DIR DATA_DIR [SEED] [NOISE_SEED]
#
# One torch thread (OMP_NUM_THREADS=1): at this machine's rates (AMD EPYC, one thread; zgr about
# 16 draws/s, gr-mc(M=100) about 6) the whole list is about 4-5 hours of one core.
set -euo pipefail
RUNS=${1:?RUNS_DIR}
DATA=${2:?DATA_DIR}
SEED=${3:-0}
NOISE_SEED=${4:-0}
SNAPS=${SNAPS:-$(dirname "$RUNS")/snapshots}
mkdir -p "$RUNS" "$SNAPS"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SPECS="zgr,gs-st(t=0.01),gs(t=0.01),st,st(t=2),gs-st(t=1),gr-mc(M=100,t=0.01),gr-mc(M=10,t=0.01)"
SPECS="$SPECS,gr-mc(M=100,t=0.0194),gs-st(t=0.141),gr-mc(M=10,t=0.141),gr-mc(M=100,t=0.141),gs(t=0.141)"
SPECS="$SPECS,gr-mc(M=10,t=1),gr-mc(M=100,t=1),gs(t=1),st-zgr(alpha=0.5,t=1),st-zgr(alpha=0.5,t=2),st(t=1.5)"
SNAP=$(python - "$SEED" "$DATA" "$SNAPS" <<'PY'
import sys
import torch
torch.set_num_threads(1)
from biasvar.studies.reproduce import fig1_snapshot
seed, data, snaps = int(sys.argv[1]), sys.argv[2], sys.argv[3]
snap = fig1_snapshot(epochs=10, seed=seed, data_dir=data, device="cpu", snapshot_dir=snaps,
                     say=lambda s: print(s, file=sys.stderr, flush=True))
print(snap.path)
PY
)
echo "snapshot: $SNAP" >&2
exec biasvar sweep --snapshot "$SNAP" --estimators "$SPECS" --reference "rf(M=4)" --n 10000 \
    --seed "$NOISE_SEED" --device cpu --runs-dir "$RUNS"
