"""Independent re-implementations of ReinMax, ARSM, IndeCateR and DisARM as their authors formulate them.

Written from the published formulas and from reading the authors' public code (for facts, not
copied); used by ``tests/test_estimators_newer.py`` and, run as a script, to produce the numbers of
``results/peers.md``::

    OMP_NUM_THREADS=1 python tests/peers_newer.py [--n 100000]

Each function works on one data point with V categorical variables of K categories, a loss
``f(y [N, V, K]) -> [N]`` of one-hot samples, vectorised over a leading draw dimension n. It returns
the gradient estimate in the logits [n, V, K].

* ReinMax: the backward formula of ``microsoft/ReinMax`` (``reinmax/reinmax.py``, ReinMaxCore.backward):
  ``s = (softmax(eta / tau) + y) / 2``; ``a1 = 2 g s - s <2 g s, 1>``; ``a0 = -g p / 2 - p <-g p / 2, 1>``;
  ``a0 + a1`` centred to mean 0, with ``g = dL/dy``.
* ARSM: ``ARM-gradient/ARSM`` (``vae/arsm_vae.py``): Dirichlet(1) ``pi`` per variable; for i <= j swap
  columns i and j of ``pi`` for every variable, ``s_ij = onehot(argmin(log pi_ij - eta))``,
  ``F[i, j] = F[j, i] = f(s_ij)``; ``tilde_F = F - mean over the last axis``; gradient
  ``(1/K - pi) @ tilde_F``.
* IndeCateR: ``ML-KULeuven/catlog`` (``synthetic/jointcategorical.py``, indecater_grads): for every
  variable i and category j the sample with ``x_i = j``; gradient of ``sum_{i,j} sg(f_ij) softmax(eta)_ij``.
* DisARM: ``google-research/google-research`` (``disarm/binary/networks.py``, grad_type 'disarm'):
  ``b1 = [u > 1 - sigma(alpha)]``, ``b2 = [u < sigma(alpha)]``, gradient in alpha
  ``(f(b1) - f(b2)) / 2 * [b1 != b2] (-1)^{b2} sigma(|alpha|)``; for K = 2 categorical variables
  ``alpha = eta_1 - eta_0`` and the logits' gradient is ``(-g_alpha, g_alpha)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def onehot(idx: Tensor, K: int, dtype: torch.dtype) -> Tensor:
    return (torch.arange(K) == idx.unsqueeze(-1)).to(dtype)


def peer_reinmax(logits: Tensor, y: Tensor, g: Tensor, tau: float) -> Tensor:
    """ReinMax backward of the authors: logits, y, g = dL/dy [..., K]."""
    p = logits.softmax(-1)
    s = 0.5 * ((logits / tau).softmax(-1) + y)
    a1 = 2 * g * s
    a1 = a1 - s * a1.sum(-1, keepdim=True)
    a0 = -0.5 * g * p
    a0 = a0 - p * a0.sum(-1, keepdim=True)
    out = a0 + a1
    return out - out.mean(-1, keepdim=True)


def peer_arsm(f, logits: Tensor, pi: Tensor) -> Tensor:
    """ARSM of the authors' VAE code: logits [V, K], pi [n, V, K] (Dirichlet(1)); returns [n, V, K]."""
    n, V, K = pi.shape
    F = torch.zeros(n, K, K, dtype=pi.dtype)
    for i in range(K):
        for j in range(i, K):
            pij = pi.clone()
            pij[..., [i, j]] = pij[..., [j, i]]
            s = onehot((pij.log() - logits).argmin(-1), K, pi.dtype)  # [n, V, K]
            F[:, i, j] = F[:, j, i] = f(s)
    tF = F - F.mean(-1, keepdim=True)
    return torch.matmul(1.0 / K - pi, tF)


def peer_indecater(f, logits: Tensor, x: Tensor) -> Tensor:
    """IndeCateR of the authors: logits [V, K], x [n, V] category indices; returns [n, V, K]."""
    n, V = x.shape
    K = logits.shape[-1]
    fij = torch.zeros(n, V, K, dtype=logits.dtype)
    for i in range(V):
        for j in range(K):
            xs = x.clone()
            xs[:, i] = j
            fij[:, i, j] = f(onehot(xs, K, logits.dtype))
    lg = logits.detach().expand(n, V, K).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((fij.detach() * lg.softmax(-1)).sum(), lg)
    return grad


def peer_disarm(f, logits: Tensor, u: Tensor) -> Tensor:
    """DisARM of the authors for K = 2 categorical variables: logits [V, 2], u [n, V] uniform; [n, V, 2]."""
    alpha = logits[:, 1] - logits[:, 0]
    sig = torch.sigmoid(alpha)
    b1 = (u > 1 - sig).to(u.dtype)
    b2 = (u < sig).to(u.dtype)
    as_y = lambda b: torch.stack([1 - b, b], -1)  # noqa: E731
    f1, f2 = f(as_y(b1)), f(as_y(b2))
    factor = ((1 - b1) * b2 + b1 * (1 - b2)) * (-1.0) ** b2 * torch.sigmoid(alpha.abs())
    g_alpha = 0.5 * (f1 - f2).unsqueeze(-1) * factor  # [n, V]
    return torch.stack([-g_alpha, g_alpha], -1)


# -------------------------------------------------------------------------------------------------
# the toolkit side, on the same noise


def toolkit_draws(prob, spec: str, G: Tensor) -> Tensor:
    """Gradient draws [n, V, K] of ``spec`` on a toy-cat problem for Gumbel noise G [n, V, K]."""
    from biasvar.estimators import build
    from biasvar.problems import draw_loss

    est = build(spec)
    noise = {"z": {"G": G.unsqueeze(1)}}  # [n, B=1, V, K]
    fn = torch.func.vmap(torch.func.grad(lambda p, z: draw_loss(prob, est, p, z)), in_dims=(None, 0))
    return fn(prob.params, noise)["logits"]


def peer_draws(prob, spec: str, G: Tensor) -> Tensor:
    """The authors' formulation of ``spec`` on the same noise G [n, V, K]."""
    logits = prob.params["logits"]
    f = prob.loss_fn()
    logp = logits.log_softmax(-1)
    if spec == "arsm":
        return peer_arsm(f, logits, (-G).softmax(-1))
    if spec == "indecater":
        return peer_indecater(f, logits, (logp + G).argmax(-1))
    if spec == "disarm":
        return peer_disarm(f, logits, torch.sigmoid(G[..., 1] - G[..., 0]))
    if spec.startswith("reinmax"):
        tau = float(spec.split("=")[1].rstrip(")")) if "=" in spec else 1.0
        y = onehot((logp + G).argmax(-1), logits.shape[-1], logits.dtype)
        yg = y.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(yg).sum(), yg)
        return peer_reinmax(logits.expand_as(y), y, g, tau)
    raise ValueError(spec)


def gumbel(n: int, V: int, K: int, seed: int, dtype=torch.float64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return -torch.log(torch.empty(n, V, K, dtype=dtype).exponential_(generator=g))


CASES = [  # (spec, V, K, loss)
    ("reinmax(t=2)", 1, 3, "quadratic"), ("reinmax(t=2)", 3, 5, "sigmoid"), ("reinmax(t=1.5)", 2, 8, "quartic"),
    ("arsm", 1, 3, "quadratic"), ("arsm", 3, 5, "sigmoid"), ("arsm", 2, 8, "quartic"),
    ("indecater", 1, 3, "quadratic"), ("indecater", 3, 5, "sigmoid"), ("indecater", 2, 8, "quartic"),
    ("disarm", 1, 2, "quadratic"), ("disarm", 4, 2, "sigmoid"), ("disarm", 6, 2, "quartic"),
]


def compare(spec: str, V: int, K: int, loss: str, n: int, seed: int = 0) -> dict:
    """Same noise: max |toolkit - peer| per draw; independent noise: means (in SEs) and variances."""
    from biasvar.problems import ToyCat

    prob = ToyCat(vars=V, categories=K, loss=loss, seed=seed + 11)
    G = gumbel(n, V, K, seed)
    J, P = toolkit_draws(prob, spec, G), peer_draws(prob, spec, G)
    same = float((J - P).abs().max())
    P2 = peer_draws(prob, spec, gumbel(n, V, K, seed + 1000))  # independent draws of the peer
    se = (J.var(0) / n + P2.var(0) / n).sqrt()
    z = ((J.mean(0) - P2.mean(0)).abs() / se.clamp_min(1e-12)).max()
    vj, vp = J.var(0).mean(), P2.var(0).mean()
    hj = ((J - J.mean(0)) ** 2).flatten(1).mean(1)  # per-draw share of the mean variance
    hp = ((P2 - P2.mean(0)) ** 2).flatten(1).mean(1)
    se_rel = float((hj.var() / n + hp.var() / n).sqrt() / vp) if vp > 0 else 0.0
    truth = prob.exact_gradient()["logits"]
    zt = ((J.mean(0) - truth).abs() / (J.var(0) / n).sqrt().clamp_min(1e-12)).max()
    return {"spec": spec, "V": V, "K": K, "loss": loss, "n": n, "max_abs_diff_same_noise": same,
            "max_z_means": float(z), "var_toolkit": float(vj), "var_peer": float(vp),
            "var_rel_diff": float(vj / vp - 1) if vp > 0 else 0.0, "var_rel_se": se_rel, "max_z_vs_exact": float(zt)}


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    print("| spec | V | K | loss | draws | max abs diff, same noise | max z, means | V toolkit | V peer "
          "| rel. diff V (SE) | max z vs exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        r = compare(*case, n=args.n)
        print(f"| {r['spec']} | {r['V']} | {r['K']} | {r['loss']} | {r['n']} | {r['max_abs_diff_same_noise']:.1e} "
              f"| {r['max_z_means']:.2f} | {r['var_toolkit']:.4g} | {r['var_peer']:.4g} | "
              f"{100 * r['var_rel_diff']:+.2f}% ({100 * r['var_rel_se']:.2f}%) | {r['max_z_vs_exact']:.2f} |",
              flush=True)
