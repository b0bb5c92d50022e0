"""Honest intervals on real gradient draws, not only on Gaussian ones.

Two independent runs of the same unbiased estimator (rf(M=4), seeds 2r and 2r+1) at one VAE
snapshot have true squared bias exactly 0. Through the real engine, run files and analysis, the
95% interval of Eq. 16 must hold 0 in about 95% of independent pairs. Observed here: 58 of 60
pairs (0.97); a larger study in this session (150 pairs, a bigger VAE) gave 0.92 (SE 0.022).
The bound below (>= 0.85, 3.6 standard errors under 0.95 for 60 pairs) catches intervals that are
dishonest on heavy-tailed, heterogeneous real gradients, not a 0.95 vs 0.92 difference.
"""

import numpy as np
import pytest
import torch

from biasvar import stats as S
from biasvar import store
from biasvar.engine import sample_run
from biasvar.problems.vae import VAE
from biasvar.snapshot import snapshot_of

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_interval_covers_zero_bias_between_independent_rf_runs(tmp_path):
    prob = VAE(categories=4, vars=2, hidden=(16, 8), seed=0)
    prob.batch = (torch.rand(10, 784, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    snap = snapshot_of(prob)
    pairs, hits, values = 60, 0, []
    for r in range(pairs):
        paths = [sample_run(snap, "rf(M=4)", n=320, seed=s, runs_dir=tmp_path, block_size=10, keep=0,
                            device="cpu") for s in (2 * r, 2 * r + 1)]
        ref, test = (store.read_run(p) for p in paths)
        comp = S.compare(ref, test, n_resamples=300, rng=np.random.default_rng(r))
        hits += comp.b2.low <= 0.0 <= comp.b2.high
        values.append(comp.b2.value)
    values = np.asarray(values)
    assert hits / pairs >= 0.85, hits / pairs
    # Eq. 16 is unbiased: the mean over pairs is 0 within 4 standard errors
    assert abs(values.mean()) < 4 * values.std(ddof=1) / np.sqrt(pairs)
