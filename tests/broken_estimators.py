"""Plug-in estimator factories for the tests of ``biasvar check-estimator`` and the plug-in API:
honest ones, and deliberately broken ones (each fails one named check)."""

import torch

from biasvar import UserEstimator
from biasvar.estimators import sample_onehot, st_y, zgr_y


def zgr_copy():
    """ZGR, declared with its y_fn: its expectation is exact by enumeration (equal to zgr's)."""
    return UserEstimator(lambda logits, noise: zgr_y(logits, sample_onehot(logits, noise["G"])), y_fn=zgr_y)


def bare(t=1.0):
    """A bare callable (ST at t): read as UserEstimator(fn)."""
    return lambda logits, noise: st_y(logits, sample_onehot(logits, noise["G"]), t=t)


def biased(t=1.0):
    """ST claiming to be unbiased: fails 'unbiased'."""
    return UserEstimator(bare(t), unbiased=True)


def wrong_noise():
    """Asks for uniforms and uses them as Gumbel noise: its samples are not softmax(logits)."""
    return UserEstimator(lambda logits, noise: st_y(logits, sample_onehot(logits, noise["U"])), noise={"U": "uniform"})


def not_reproducible():
    """Draws its own noise from torch's global generator: fails 'chunking' (and is not vmap-safe)."""

    def fn(logits, noise):
        G = -torch.log(-torch.log(torch.rand(logits.shape, dtype=logits.dtype)))
        return st_y(logits, sample_onehot(logits, G))

    return UserEstimator(fn)


def naive_softmax(t=0.5):
    """ST(t) with an unguarded exp: NaN at logits +-80 in float32 (fails 'finite logits')."""

    def fn(logits, noise):
        y = sample_onehot(logits, noise["G"])
        e = (logits / t).exp()
        d = e / e.sum(-1, keepdim=True)
        return y + (d - d.detach())

    return UserEstimator(fn)


def one_hot_st():
    """ST whose sample uses torch.nn.functional.one_hot (not vmap-safe): the loop is its fallback."""

    def fn(logits, noise):
        x = torch.nn.functional.one_hot((logits.log_softmax(-1) + noise["G"]).argmax(-1), logits.shape[-1])
        d = logits.softmax(-1)
        return x.to(logits.dtype) + (d - d.detach())

    return UserEstimator(fn, summary="ST with one_hot")


def raises(t=1.0):
    raise ValueError(f"t={t} is not supported")


def not_an_estimator():
    return 42


def bad_noise_kind():
    return UserEstimator(bare(), noise={"G": "poisson"})


NOT_CALLABLE = 3
