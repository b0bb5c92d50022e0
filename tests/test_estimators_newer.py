"""ReinMax, ARSM, IndeCateR, DisARM: exact enumeration, closed forms, the authors' formulations, vmap.

* ReinMax's expectation by enumeration against its defining formula (Liu et al. 2023, Alg. 2),
  outcome by outcome; ReinMax(t = 1) is ZGR (Eq. 12) outcome by outcome.
* IndeCateR's estimate is a function of the sample x alone: unbiased by enumerating every x.
* DisARM's estimate is a function of the antithetic pair (b, b~) alone: unbiased by enumerating every
  pair with its probability.
* ARSM depends on the continuous Dirichlet noise: unbiased within 5 standard errors over 1e5 draws,
  and exactly the K = 2 closed form draw by draw.
* The authors' formulations (``tests/peers_newer.py``) agree draw by draw on the same noise.
* Hierarchical (hvae) and VAE problems: unbiased against exact enumeration within 5 SEs; the vmap
  and loop paths of the engine agree; float32 and float64.
"""

import itertools
import math
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import draw_moments
from conftest import enum_logits as _logits
from conftest import enum_loss as _loss
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from biasvar.errors import SpecError
from biasvar.estimators import build, reinmax_y, zgr_y
from biasvar.exact import enumerate_onehot, expected_estimator, outcome_gradients, true_gradient
from biasvar.problems import ToyCat, draw_loss, noise_requests
from biasvar.problems.base import passes
from biasvar.rng import draw_noise, stream_key
from biasvar.spec import parse_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers_newer as peers  # noqa: E402

D = torch.float64
SEEDS = st.integers(min_value=0, max_value=10_000)
SHAPES = st.sampled_from([(1, 2), (1, 3), (1, 4), (1, 8), (2, 2), (2, 3), (2, 5), (3, 2), (3, 3), (3, 4)])
LOSSES = st.sampled_from(["quadratic", "linear", "quartic", "sigmoid"])




def _jac(s):
    """diag(s) - s s^T, batched [..., K, K]."""
    return torch.diag_embed(s) - s.unsqueeze(-1) * s.unsqueeze(-2)


# ---------------------------------------------------------------- spec, registry, cost
def test_specs_and_canonical_forms():
    assert str(parse_spec("reinmax")) == "reinmax"
    assert str(parse_spec("reinmax(t=1)")) == "reinmax"
    assert str(parse_spec("reinmax(2.0)")) == "reinmax(t=2)"
    for name in ("arsm", "indecater", "disarm"):
        spec = parse_spec(name)
        assert str(spec) == name and spec.family.unbiased and spec.family.score_function
    with pytest.raises(SpecError):
        parse_spec("arsm(M=2)")
    with pytest.raises(SpecError):
        parse_spec("reinmax(t=0)")
    with pytest.raises(SpecError, match="depends on the problem"):
        _ = parse_spec("arsm").cost
    assert parse_spec("reinmax(t=3)").cost == 1


@pytest.mark.parametrize("V,K", [(1, 3), (3, 4), (2, 8)])
def test_passes_per_draw(V, K):
    prob = ToyCat(vars=V, categories=K)
    assert passes(prob, build("arsm")) == 1 + K * (K - 1) // 2
    assert passes(prob, build("indecater")) == 1 + V * (K - 1)
    assert passes(prob, build("reinmax(t=2)")) == 1
    assert passes(prob, build("rf(M=3)")) == 3
    assert passes(ToyCat(vars=V, categories=2), build("disarm")) == 2


def test_disarm_refuses_k_above_2_and_indecater_refuses_coupled_problems():
    with pytest.raises(SpecError, match="K = 2"):
        noise_requests(ToyCat(vars=2, categories=3), build("disarm"))
    prob = ToyCat(vars=2, categories=3)
    prob.coupled = True
    with pytest.raises(SpecError, match="couples"):
        passes(prob, build("indecater"))


# ---------------------------------------------------------------- ReinMax
def _reinmax_formula(logits, loss, t):
    """Alg. 2 by hand, every outcome: J(x) = (2 J(pi1) - J(pi0) / 2) g(x); [N, V, K] and p(x)."""
    V, K = logits.shape
    Y = enumerate_onehot(V, K)
    Yg = Y.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(Yg).sum(), Yg)  # [N, V, K]
    p0 = logits.softmax(-1).expand_as(Y)
    pi1 = (Y + (logits / t).softmax(-1)) / 2
    J = 2 * (_jac(pi1) @ g.unsqueeze(-1)).squeeze(-1) - 0.5 * (_jac(p0) @ g.unsqueeze(-1)).squeeze(-1)
    p = (Y * logits.log_softmax(-1)).sum((-1, -2)).exp()
    return J, p


@given(shape=SHAPES, seed=SEEDS, t=st.floats(min_value=0.3, max_value=8.0), kind=LOSSES)
def test_reinmax_expectation_is_its_defining_formula(shape, seed, t, kind):
    V, K = shape
    logits, loss = _logits(seed, V, K), _loss(kind, V, K, seed + 1)
    J, p = outcome_gradients(logits, loss, partial(reinmax_y, t=t))
    Jf, pf = _reinmax_formula(logits, loss, t)
    assert_close(p, pf)
    assert_close(J, Jf, rtol=1e-10, atol=1e-12)  # outcome by outcome
    expect = (pf[:, None, None] * Jf).sum(0)
    assert_close(expected_estimator(logits, loss, partial(reinmax_y, t=t)), expect, rtol=1e-10, atol=1e-12)


@given(shape=SHAPES, seed=SEEDS, kind=LOSSES)
def test_reinmax_at_t1_is_zgr_outcome_by_outcome(shape, seed, kind):
    V, K = shape
    logits, loss = _logits(seed, V, K), _loss(kind, V, K, seed + 1)
    J, _ = outcome_gradients(logits, loss, partial(reinmax_y, t=1.0))
    Jz, _ = outcome_gradients(logits, loss, zgr_y)
    assert_close(J, Jz, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("V,K", [(1, 3), (2, 4)])
def test_reinmax_with_temperature_is_biased_for_a_quadratic(V, K):
    logits, loss = _logits(0, V, K), _loss("quadratic", V, K, 1)
    truth = true_gradient(logits, loss)
    assert_close(expected_estimator(logits, loss, partial(reinmax_y, t=1.0)), truth, rtol=0, atol=1e-10)
    assert (expected_estimator(logits, loss, partial(reinmax_y, t=3.0)) - truth).abs().max() > 1e-3


@given(K=st.sampled_from([2, 3, 5, 8]), seed=SEEDS, t=st.floats(min_value=1.0, max_value=8.0))
def test_reinmax_matches_the_authors_backward_formula(K, seed, t):
    """microsoft/ReinMax ReinMaxCore.backward, re-implemented in peers_newer, on random upstream gradients."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(4, K, generator=g, dtype=D)
    y = peers.onehot(torch.randint(K, (4,), generator=g), K, D)
    up = torch.randn(4, K, generator=g, dtype=D)
    lg = logits.clone().requires_grad_(True)
    (J,) = torch.autograd.grad((reinmax_y(lg, y, t) * up).sum(), lg)
    assert_close(J, peers.peer_reinmax(logits, y, up, t), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- IndeCateR and DisARM by enumeration
def _toy(V, K, loss, seed):
    return ToyCat(vars=V, categories=K, loss=loss, seed=seed, logits=_logits(seed, V, K))


def _grads(prob, spec, G):
    """Gradient draws [n, V, K] for Gumbel noise G [n, V, K] (engine path: vmap over draw_loss)."""
    return peers.toolkit_draws(prob, spec, G)


@given(shape=SHAPES, seed=SEEDS, kind=LOSSES)
@settings(max_examples=40, deadline=None)
def test_indecater_is_unbiased_by_enumeration(shape, seed, kind):
    V, K = shape
    prob = _toy(V, K, kind, seed)
    logp = prob.params["logits"].log_softmax(-1)
    Y = enumerate_onehot(V, K)  # every outcome x
    G = 40.0 * Y - logp  # argmax(logp + G) = x, whatever the logits
    J = _grads(prob, "indecater", G)
    p = (Y * logp).sum((-1, -2)).exp()
    assert_close((p[:, None, None] * J).sum(0), prob.exact_gradient()["logits"], rtol=0, atol=1e-10)
    if V == 1:  # one variable: IndeCateR sums over every category, it is the exact gradient
        assert_close(J, prob.exact_gradient()["logits"].expand_as(J), rtol=0, atol=1e-10)


def _disarm_outcomes(alpha):
    """Per variable, the feasible (b, b~) pairs: a representative d = G_1 - G_0 and its probability."""
    a = float(alpha)
    lo, hi = -abs(a), abs(a)
    F = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731, logistic cdf of d
    out = [(lo - 1.0, F(lo)), (hi + 1.0, 1 - F(hi))]
    if hi > lo:
        out.append((0.0, F(hi) - F(lo)))
    return out


@given(V=st.integers(1, 4), seed=SEEDS, kind=LOSSES)
@settings(max_examples=40, deadline=None)
def test_disarm_is_unbiased_by_enumeration(V, seed, kind):
    """b = [d > -alpha], b~ = [d < alpha] with d = G_1 - G_0 logistic: three regions per variable."""
    prob = _toy(V, 2, kind, seed)
    lg = prob.params["logits"]
    per_var = [_disarm_outcomes(lg[v, 1] - lg[v, 0]) for v in range(V)]
    combos = list(itertools.product(*per_var))
    d = torch.tensor([[c[0] for c in combo] for combo in combos], dtype=D)  # [N, V]
    w = torch.tensor([math.prod(c[1] for c in combo) for combo in combos], dtype=D)
    assert abs(float(w.sum()) - 1) < 1e-12
    G = torch.stack([torch.zeros_like(d), d], -1)
    J = _grads(prob, "disarm", G)
    assert_close((w[:, None, None] * J).sum(0), prob.exact_gradient()["logits"], rtol=0, atol=1e-10)


# ---------------------------------------------------------------- ARSM: closed form at K = 2, Monte Carlo
@given(V=st.integers(1, 4), seed=SEEDS, kind=LOSSES)
@settings(max_examples=25, deadline=None)
def test_arsm_at_k2_is_the_ar_closed_form_draw_by_draw(V, seed, kind):
    """K = 2: F = [[f0, f1], [f1, f0]]: g_1 = (f1 - f0) (pi_1 - pi_0) / 2, g_0 = -g_1 (f1: all swapped)."""
    prob = _toy(V, 2, kind, seed)
    G = peers.gumbel(64, V, 2, seed)
    J = _grads(prob, "arsm", G)
    f, lg = prob.loss_fn(), prob.params["logits"]
    f0 = f(peers.onehot((lg + G).argmax(-1), 2, D))
    f1 = f(peers.onehot((lg + G.flip(-1)).argmax(-1), 2, D))
    pi = (-G).softmax(-1)
    g1 = 0.5 * (f1 - f0).unsqueeze(-1) * (pi[..., 1] - pi[..., 0])
    assert_close(J, torch.stack([-g1, g1], -1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("V,K,kind", [(1, 3, "quadratic"), (2, 4, "sigmoid"), (3, 3, "quartic"), (1, 8, "quartic")])
def test_arsm_is_unbiased_within_standard_errors(V, K, kind):
    prob = _toy(V, K, kind, 5)
    n = 100_000
    J = _grads(prob, "arsm", peers.gumbel(n, V, K, 9))
    se = J.std(0) / math.sqrt(n)
    assert ((J.mean(0) - prob.exact_gradient()["logits"]).abs() < 5 * se + 1e-12).all()


# ---------------------------------------------------------------- the authors' formulations, same noise
@pytest.mark.parametrize("spec,V,K,kind", [c for c in peers.CASES])
def test_agrees_with_the_authors_formulation_draw_by_draw(spec, V, K, kind):
    prob = _toy(V, K, kind, 3)
    G = peers.gumbel(500, V, K, 4)
    assert_close(_grads(prob, spec, G), peers.peer_draws(prob, spec, G), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- models: hierarchical, batch, engine paths
def _tiny(kind, C):
    from biasvar.problems.hvae import HVAE
    from biasvar.problems.vae import VAE

    g = torch.Generator().manual_seed(1)
    if kind == "vae":
        prob = VAE(categories=C, vars=2, hidden=(5, 4), seed=3, dtype=D)
    else:
        prob = HVAE(categories=C, vars=2, seed=4, dtype=D)
    prob.params = {k: 3 * v for k, v in prob.params.items()}
    prob.batch = torch.bernoulli(torch.full((2, 784), 0.3, dtype=D), generator=g)
    return prob


@pytest.mark.parametrize("kind,C,spec", [("hvae", 2, "arsm"), ("hvae", 2, "disarm"), ("hvae", 2, "indecater"),
                                         ("vae", 4, "arsm"), ("vae", 4, "indecater"), ("hvae", 4, "indecater")])
def test_unbiased_on_vae_and_hierarchical_vae(kind, C, spec):
    """Two data points, nodes in sequence (hvae: z2 depends on z1): every parameter within 5 SEs."""
    prob = _tiny(kind, C)
    exact = prob.exact_gradient()
    got = draw_moments(prob, spec, 20_000, chunk=250)
    for k, (mean, se) in got.items():
        assert ((mean - exact[k]).abs() <= 5 * se + 1e-9).all(), (spec, k, float(((mean - exact[k]).abs() / se).max()))


@pytest.mark.parametrize("spec", ["reinmax(t=2)", "arsm", "indecater", "disarm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_engine_vmap_and_loop_agree(spec, dtype):
    from biasvar.engine import sample_gradients

    prob = _tiny("hvae", 2)
    runs = {m: torch.cat([c.grads for c in sample_gradients(prob, spec, n=12, seed=1, dtype=dtype, method=m,
                                                             chunk=5)])
            for m in ("vmap", "loop")}
    assert runs["vmap"].dtype == dtype and torch.isfinite(runs["vmap"]).all()
    assert runs["vmap"].abs().sum() > 0
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert_close(runs["vmap"], runs["loop"], rtol=tol, atol=tol)


@pytest.mark.parametrize("spec", ["reinmax(t=2)", "arsm", "indecater"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_logits_stay_finite(spec, dtype):
    prob = ToyCat(vars=2, categories=4, logits=torch.tensor([[60.0, -60.0, 0.0, 55.0], [-80.0, 80.0, 79.0, 0.0]],
                                                          dtype=dtype), dtype=dtype)
    G = peers.gumbel(50, 2, 4, 0, dtype=dtype)
    J = peers.toolkit_draws(prob, spec, G)
    assert J.dtype == dtype and torch.isfinite(J).all()


def test_run_header_cost_and_unbiased_newcomer_as_reference(tmp_path):
    """A sweep with ``indecater`` as the reference: run files carry the problem's cost, Eq. 16 runs."""
    from biasvar import store
    from biasvar.engine import sample_run
    from biasvar.report import analyze_runs
    from biasvar.snapshot import snapshot_of

    snap = snapshot_of(ToyCat(vars=3, categories=4, seed=2))
    ref = sample_run(snap, "indecater", n=2000, seed=0, runs_dir=tmp_path, device="cpu", keep=0)
    for spec in ("arsm", "zgr", "reinmax(t=2)", "reinmax(t=4)"):
        sample_run(snap, spec, n=2000, seed=0, runs_dir=tmp_path, device="cpu", keep=0)
    assert int(store.read_run(ref, load_sums=False).attrs["cost"]) == 1 + 3 * 3
    report = analyze_runs(tmp_path, snapshot=snap.id, reference="indecater", n_resamples=200)
    assert report.reference == "indecater"
    arsm = report.row("arsm")
    assert arsm.cost == 1 + 4 * 3 // 2
    # ARSM and IndeCateR are both unbiased: the squared bias interval holds 0; ReinMax(2) is biased
    assert arsm.b2.low <= 0 <= arsm.b2.high
    assert report.row("reinmax(t=2)").b2.low > 0
    from biasvar.plots import plot_pareto

    res = plot_pareto(report, tmp_path / "pareto", formats=("png",))
    assert any(str(f).endswith(".png") for f in res.paths)
    assert {"ReinMax(t)", "ARSM", "ZGR"} <= set(res.drawn)


def test_fig4_extended_preset():
    from biasvar.presets import T_ST, get_preset

    ext, fig4 = get_preset("fig4-extended"), get_preset("fig4")
    assert set(fig4.specs) <= set(ext.specs) and ext.reference == fig4.reference == "rf(M=4)"
    extra = set(ext.specs) - set(fig4.specs)
    assert extra == {str(parse_spec(f"reinmax(t={t})")) for t in T_ST} | {"arsm", "indecater"}


def test_arsm_agrees_with_rf_on_a_coupled_quantized_net():
    """qnet couples the data points of a pass (shared weight samples, batch norm): ARSM swaps every
    variable of a node at once and uses the pass's mean loss. No exact gradient here: its mean must
    agree with the unbiased rf(M=4) within standard errors on every coordinate (212 of them)."""
    from biasvar.problems.qnet import QNet

    q = QNet(arch="2C3-MP2-6FC-10FC", weights_bits="T", acts_bits="T", first_last_bits="T",
             placeholder_rows=2, image_size=8, dtype=D)

    def flat_draws(spec, n, chunk=500):
        est = build(spec)
        req, key = noise_requests(q, est), stream_key(0, spec)
        fn = torch.func.vmap(torch.func.grad(lambda p, z: draw_loss(q, est, p, z)), in_dims=(None, 0))
        out = []
        for s in range(0, n, chunk):
            g = fn(q.params, draw_noise(req, key, torch.arange(s, min(n, s + chunk)), dtype=D))
            out.append(torch.cat([v.reshape(v.shape[0], -1) for v in g.values()], 1))
        return torch.cat(out)

    A, R = flat_draws("arsm", 3000), flat_draws("rf(M=4)", 12000)
    z = (A.mean(0) - R.mean(0)) / (A.var(0) / A.shape[0] + R.var(0) / R.shape[0]).sqrt()
    assert z.abs().max() < 5 and (z**2).mean() < 1.5, (float(z.abs().max()), float((z**2).mean()))


def test_estimators_command_lists_the_newcomers_with_paper_and_cost():
    from biasvar_cli.main import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["estimators"], terminal_width=200)
    assert result.exit_code == 0
    flat = " ".join(result.output.split())  # the table wraps at the console's width
    for text in ("reinmax(t=2)", "Liu", "arsm", "K(K-1)/2", "indecater", "V(K-1)", "disarm", "Dong"):
        assert text in flat, text


def test_cli_sample_refuses_disarm_on_k4_with_one_line(tmp_path):
    from biasvar_cli.main import app
    from typer.testing import CliRunner

    from biasvar.snapshot import save_snapshot

    snap = tmp_path / "toy.pt"
    save_snapshot(snap, ToyCat(vars=2, categories=4))
    result = CliRunner().invoke(app, ["sample", "--snapshot", str(snap), "--estimator", "disarm", "--n", "10",
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert "disarm is for binary variables (K = 2)" in result.output
    assert "Traceback" not in result.output
    assert not list((tmp_path / "runs").rglob("*.h5"))
