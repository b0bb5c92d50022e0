"""A plug-in estimator that is not built in: straight-through with scaled noise in its surrogate.

The forward value is the exact categorical sample ``x = onehot(argmax(log p + G))``; the backward
pass is that of ``softmax((log p + s G) / t)``, the same Gumbel noise G scaled by ``s``. ``s = 0`` is
ST(t) (``st(t)``); ``s = 1`` is straight-through Gumbel-Softmax (``gs-st(t)``); in between it is
neither. It is biased (it claims nothing) and needs only the Gumbel noise of the sample.

    biasvar check-estimator 'examples/noisy_st.py:make(s=0.5,t=0.5)'
"""

import torch

from biasvar import UserEstimator
from biasvar.estimators import sample_onehot  # the hard sample argmax(log p + G), vmap-safe


def make(t: float = 1.0, s: float = 0.5) -> UserEstimator:
    if t <= 0 or s < 0:
        raise ValueError(f"expected t > 0 and s >= 0, got t={t}, s={s}")

    def fn(logits: torch.Tensor, noise: dict) -> torch.Tensor:
        logp = logits.log_softmax(-1)
        x = sample_onehot(logits, noise["G"])
        d = ((logp + s * noise["G"]) / t).softmax(-1)
        return x + (d - d.detach())

    return UserEstimator(fn, noise={"G": "gumbel"}, summary=f"ST with noise scaled by {s} at t={t}")
