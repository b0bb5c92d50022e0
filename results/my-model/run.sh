set -e
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 COLUMNS=80
B=.venv/bin/biasvar
rm -rf runs-my-model snapshots/my-model.pt
run() { echo "\$ biasvar $*"; $B "$@"; echo; }
run train --problem examples.my_model:make -o bits=8 --data mnist-b --data-dir ../shared/data --offline \
  --estimator zgr --epochs 1 --steps-per-epoch 600 --lr 1e-3 --eval-batch-size 100 --threads 1 \
  --out snapshots/my-model.pt
for e in st zgr "rf(M=4)"; do
  run sample --snapshot snapshots/my-model.pt -e "$e" --n 5000 --device cpu --runs-dir runs-my-model
done
run report --runs-dir runs-my-model --reference exact
run plot pareto --runs-dir runs-my-model --reference exact --out figures/my-model/pareto
$B report --runs-dir runs-my-model --reference exact --format json > results/my-model/report.json
