#!/usr/bin/env bash
# Collect what scripts/claims-cpu.sh has finished into a committable folder (results/claims-cpu/):
# the statistics store of the COMPLETE runs only (a run still in progress is left out: its numbers
# would change), its SHA-256, `biasvar ls` of the runs folder, the report (JSON and Markdown), the
# paper's claims ledger and the ledger restricted to the temperatures the CPU runs
# (scripts/claims_subset.py), all computed from the store alone. The store is also written as parts
# of at most 4 MiB (gram-store.hdf5.part-N: files over 5 MB are never committed); join them with
# `cat gram-store.hdf5.part-* > gram-store.hdf5 && sha256sum -c gram-store.sha256`.
#
#   scripts/claims-cpu-collect.sh RUNS_DIR OUT_DIR [REFERENCE]
set -euo pipefail
RUNS=${1:?RUNS_DIR}
OUT=${2:?OUT_DIR}
REF=${3:-rf(M=4)}
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
biasvar ls --runs-dir "$RUNS" > "$OUT/runs.txt" 2>&1 || true
# hard links of the complete run files, in their snapshot folders
python - "$RUNS" "$TMP/runs" <<'PY'
import os, sys
from pathlib import Path
from biasvar import store
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
runs, _bad = store.scan_runs(src)
kept = 0
for r in runs:
    if r.status == "complete":
        p = Path(r.path)
        (dst / p.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(p, dst / p.parent.name / p.name)
        kept += 1
print(f"{kept} complete runs of {len(runs)}", file=sys.stderr)
PY
biasvar gram --runs-dir "$TMP/runs" --store "$OUT/gram-store.hdf5" --rebuild
(cd "$OUT" && sha256sum gram-store.hdf5 > gram-store.sha256)
biasvar report --store "$OUT/gram-store.hdf5" --reference "$REF" --format json --out "$OUT/report.json"
biasvar report --store "$OUT/gram-store.hdf5" --reference "$REF" --format md --out "$OUT/report.md"
python "$(dirname "$0")/claims_subset.py" --t 0.01,0.141,1 --out "$OUT/claims-subset.json"
mkdir -p "$OUT/paper-ledger" "$OUT/subset-ledger"
biasvar claims --store "$OUT/gram-store.hdf5" --reference "$REF" --out "$OUT/paper-ledger"
biasvar claims --store "$OUT/gram-store.hdf5" --reference "$REF" --claims "$OUT/claims-subset.json" \
    --out "$OUT/subset-ledger"
# the committable copy of the store: parts of at most 4 MiB, checked by joining them again
rm -f "$OUT"/gram-store.hdf5.part-*
(cd "$OUT" && split -b 4M -d -a 1 gram-store.hdf5 gram-store.hdf5.part- \
    && cat gram-store.hdf5.part-* | sha256sum | cut -d' ' -f1 | grep -qx "$(cut -d' ' -f1 gram-store.sha256)")
