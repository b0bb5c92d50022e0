"""The conformance check of an estimator (``biasvar check-estimator SPEC``): what the built-ins pass.

:func:`check_estimator` runs one spec (built-in or plug-in) through small, exactly known problems and
returns one :class:`Check` per row, each with its number:

* ``outcomes`` — the forward value is the sample: one-hot (unless relaxed), and the categories'
  frequencies over many draws of its own noise match ``softmax(logits)`` (max z-score); an estimator
  that reads the wrong noise (a uniform taken for a Gumbel, another node's) fails here;
* ``gradient = y_fn(x)`` — for an estimator that declares ``y_fn`` (a function of the outcome alone),
  the gradient of every draw is the one ``y_fn`` gives at the drawn outcome (then exact enumeration
  is exact);
* ``bias quadratic`` / ``bias quartic`` / ``bias binary`` — ``||E[J] - g|| / ||g||`` against the true
  gradient ``g`` on ``toy-cat`` (2 variables of 3 categories) with a quadratic and a quartic loss, and
  on 2 binary sites with a quartic loss; ``E[J]`` exact by enumeration where the estimator allows it
  (:func:`~biasvar.problems.enumeration.enumerate_expectation`), else the mean of engine draws;
  informative (no verdict);
* ``unbiased`` — where the estimator claims it: engine draws on the quartic toy and the binary site,
  every coordinate within 5 standard errors of the true gradient;
* ``chunking`` — draws 0..n by the engine in chunks of n, 5 and 1 are the same numbers (counter
  noise), twice over (reproducible);
* ``vmap = loop`` — the vectorized engine against the per-draw loop (n/a, with the one-line refusal,
  for a plug-in that is not vmap-safe);
* ``finite logits`` / ``finite t`` — values and gradients finite with logits +-80 (float32 and
  float64) and, for an estimator with a temperature ``t``, at ``t = 0.01`` and ``t = 100``.

A check that an estimator refuses cleanly (a :class:`~biasvar.errors.BiasvarError`: DisARM on 3
categories) is ``n/a`` with the reason; any other exception fails the check.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from biasvar import plugins, rng
from biasvar.engine.draws import sample_gradients
from biasvar.errors import BiasvarError
from biasvar.estimators import Estimator, PlugIn, UserPlugIn, build
from biasvar.estimators.plugin import vmap_error
from biasvar.problems.base import Problem
from biasvar.problems.enumeration import enumerate_expectation
from biasvar.problems.toy import ToyCat
from biasvar.problems.user import Site, UserProblem
from biasvar.spec import EstimatorSpec, make_spec, parse_spec

D = torch.float64
Z_MAX = 5.0  # z-scores above this fail (outcome frequencies, unbiasedness)
EXACT_TOL = 1e-10  # relative: identity of draws, vmap = loop, y_fn
PASS, FAIL, NA, INFO = "pass", "FAIL", "n/a", "info"


@dataclass(frozen=True)
class Check:
    """One row of the table: a check, its verdict, its number and what the number is."""

    name: str
    status: str  # pass | FAIL | n/a | info
    value: str
    detail: str


@dataclass(frozen=True)
class Settings:
    """Sizes of the check (the defaults take seconds per estimator on a CPU)."""

    outcome_draws: int = 4000
    unbiased_draws: int = 4000
    bias_draws: int = 2000
    chunk_draws: int = 12
    seed: int = 0


def toy(loss: str) -> ToyCat:
    """``toy-cat`` with 2 variables of 3 categories (9 outcomes)."""
    return ToyCat(vars=2, categories=3, loss=loss, seed=3)


def binary_site(V: int = 2, seed: int = 5, logits: Tensor | None = None) -> UserProblem:
    """V binary (Bernoulli) sites whose logits are the parameters, quartic loss of the bits."""
    g = torch.Generator().manual_seed(seed)
    drawn, a, b = (torch.randn(V, generator=g, dtype=D) for _ in range(3))
    logits = drawn if logits is None else logits
    a, b = a.to(logits.dtype), b.to(logits.dtype)

    def forward(params: dict, x: Tensor, sample: Callable) -> Tensor:
        bits = sample("b", params["l"].unsqueeze(0).expand(x.shape[0], V).unsqueeze(-1)).squeeze(-1)
        return (bits @ a) ** 4 / 4 + bits @ b

    return UserProblem({"l": logits}, torch.zeros(1, 0, dtype=D), forward, {"b": Site((V, 1))})


def engine_draws(problem: Problem, spec: EstimatorSpec, n: int, *, seed: int, chunk: int | None = None,
                 method: str = "loop") -> Tensor:
    """Draws ``0 .. n`` of the run ``(problem, spec, seed)`` by the engine, [n, dim]."""
    chunks = sample_gradients(problem, spec, n=n, seed=seed, chunk=chunk or n, method=method)
    return torch.cat([c.grads for c in chunks])


def _flat(grads: dict[str, Tensor]) -> Tensor:
    return torch.cat([v.reshape(-1) for v in grads.values()])


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    """Run one check: a clean refusal is n/a, anything else raised fails it."""
    try:
        return fn()
    except BiasvarError as e:
        return Check(name, NA, "-", f"refused: {e}")
    except Exception as e:  # noqa: BLE001 - the estimator under test may raise anything
        return Check(name, FAIL, "error", f"{type(e).__name__}: {e}")


# -- the checks ---------------------------------------------------------------------------------

def _site_noise(est: PlugIn, shape: tuple[int, ...], seed: int) -> dict[str, Tensor]:
    """One draw of the estimator's own noise for one node of logits ``shape``."""
    reqs = {"z": {k: (r.shape, r.kind) for k, r in est.noise(shape).items()}}
    key = rng.stream_key(seed, str(est.spec))
    noise = rng.draw_noise(reqs, key, torch.zeros(1, dtype=torch.int64), dtype=D)
    return {k: v[0] for k, v in noise["z"].items()}


def check_outcomes(est: Estimator, s: Settings) -> Check:
    name = "outcomes"
    if not isinstance(est, PlugIn):
        return Check(name, NA, "-", "samples by the package's own sampler (score-function or multi-pass)")
    N, z = s.outcome_draws, 0.0
    bits = binary_site().params["l"]
    for base in (toy("quadratic").params["logits"], torch.stack([torch.zeros_like(bits), bits], -1)):
        logits = base.unsqueeze(0).expand(N, *base.shape).contiguous()  # [N, V, K]: toy, then binary
        y = est(logits, _site_noise(est, tuple(logits.shape), s.seed)).detach()
        if tuple(y.shape) != tuple(logits.shape):
            return Check(name, FAIL, "shape", f"y has shape {list(y.shape)}, the logits {list(logits.shape)}")
        if not torch.isfinite(y).all():
            return Check(name, FAIL, "nan/inf", "non-finite values")
        onehot = (y - y.round()).abs().max() <= 1e-9 and ((y.round() == 0) | (y.round() == 1)).all() and \
            (y.sum(-1) - 1).abs().max() <= 1e-9
        if not est.relaxed and not onehot:
            return Check(name, FAIL, "not 1-hot", "the value of a non-relaxed estimator must be the one-hot sample")
        p = base.softmax(-1)
        freq = torch.nn.functional.one_hot(y.argmax(-1), p.shape[-1]).to(D).mean(0)
        z = max(z, ((freq - p).abs() / (p * (1 - p) / N).sqrt()).max().item())
    verdict = PASS if z <= Z_MAX else FAIL
    return Check(name, verdict, f"z {_fmt(z)}", f"vs softmax, {N} draws, toy+binary")


def check_y_fn(est: Estimator, s: Settings) -> Check:
    name = "gradient = y_fn(x)"
    if not isinstance(est, PlugIn) or est.y_fn is None:
        return Check(name, NA, "-", "no y_fn: E[J] from draws")
    base = toy("quadratic").params["logits"]
    N = 64
    lg = base.unsqueeze(0).expand(N, *base.shape).contiguous().requires_grad_(True)
    w = torch.randn(lg.shape, generator=torch.Generator().manual_seed(1), dtype=D)
    y = est(lg, _site_noise(est, tuple(lg.shape), s.seed))
    (J,) = torch.autograd.grad((y * w).sum(), lg)
    x = torch.nn.functional.one_hot(y.detach().argmax(-1), lg.shape[-1]).to(D)
    (Jx,) = torch.autograd.grad((est.y_fn(lg, x) * w).sum(), lg)
    err = ((J - Jx).abs().max() / Jx.abs().max().clamp_min(1e-300)).item()
    verdict = PASS if err <= EXACT_TOL else FAIL
    return Check(name, verdict, f"rel {_fmt(err)}", f"vs y_fn(outcome), {N} draws")


def expectation(problem: Problem, spec: EstimatorSpec, s: Settings) -> tuple[Tensor, Tensor | None, str]:
    """``E[J]`` (flat), its standard error (None where exact) and how it was computed: enumeration for
    plug-ins (exact, or conditional Monte Carlo for the Gumbel family), else the mean of draws (the
    enumeration of ``rf`` would assume its unbiasedness)."""
    e = None
    if isinstance(build(spec), PlugIn):
        try:
            e = enumerate_expectation(problem, spec, mc=s.bias_draws, seed=s.seed)
        except BiasvarError:
            e = None
    if e is not None and e.se is None:
        return _flat(e.mean), None, "exact"
    if e is not None:
        return _flat(e.mean), _flat(e.se), "cond. MC"
    J = engine_draws(problem, spec, s.bias_draws, seed=s.seed)
    return J.mean(0), J.std(0) / math.sqrt(J.shape[0]), f"{J.shape[0]} draws"


def check_bias(label: str, problem: Problem, spec: EstimatorSpec, s: Settings) -> Check:
    name = f"bias {label}"
    g = _flat(problem.exact_gradient())
    mean, se, how = expectation(problem, spec, s)
    rel = ((mean - g).norm() / g.norm()).item()
    if not math.isfinite(rel):
        return Check(name, FAIL, "nan/inf", f"E[J] is not finite ({how})")
    err = "" if se is None else f" +- {(se.norm() / g.norm()).item():.2g}"
    return Check(name, INFO, f"{_fmt(rel)}{err}", f"||E[J]-g||/||g||, {how}")


def check_unbiased(spec: EstimatorSpec, claimed: bool, s: Settings) -> Check:
    name = "unbiased"
    if not claimed:
        return Check(name, NA, "-", "not claimed")
    zs, where = [], []
    for label, problem in (("quartic toy", toy("quartic")), ("binary", binary_site())):
        try:
            J = engine_draws(problem, spec, s.unbiased_draws, seed=s.seed + 1)
        except BiasvarError:
            continue  # refused on this problem (DisARM on 3 categories)
        g = _flat(problem.exact_gradient())
        se = J.std(0) / math.sqrt(J.shape[0])
        z = ((J.mean(0) - g).abs() / (se + 1e-12 * (g.abs() + 1))).max().item()
        zs.append(z)
        where.append(label)
    if not zs:
        return Check(name, NA, "-", "refused on every problem")
    z = max(zs)
    verdict = PASS if z <= Z_MAX else FAIL
    return Check(name, verdict, f"z {_fmt(z)}", f"max z, {s.unbiased_draws} draws: {', '.join(where)}")


def _problems_for(spec: EstimatorSpec) -> Sequence[Problem]:
    """toy-cat, or the binary site where the estimator refuses 3 categories."""
    out = []
    for problem in (toy("quartic"), binary_site()):
        try:
            engine_draws(problem, spec, 1, seed=0)
        except BiasvarError:
            continue
        out.append(problem)
    return out


def check_chunking(spec: EstimatorSpec, method: str, s: Settings) -> Check:
    name = "chunking"
    n, worst = s.chunk_draws, 0.0
    problems = _problems_for(spec)
    if not problems:
        return Check(name, NA, "-", "refused on every problem")
    for problem in problems:
        whole = engine_draws(problem, spec, n, seed=s.seed, method=method)
        scale = whole.abs().max().clamp_min(1e-300)
        for chunk in (n, 5, 1):
            again = engine_draws(problem, spec, n, seed=s.seed, chunk=chunk, method=method)
            worst = max(worst, ((again - whole).abs().max() / scale).item())
    verdict = PASS if worst <= EXACT_TOL else FAIL
    return Check(name, verdict, f"rel {_fmt(worst)}", f"chunks {n}, 5, 1, twice ({method})")


def check_vmap(est: Estimator, spec: EstimatorSpec, s: Settings) -> Check:
    name = "vmap = loop"
    if isinstance(est, UserPlugIn):
        error = vmap_error(est)
        if error:
            return Check(name, NA, "loop only", f"not vmap-safe: {error}")
    worst = 0.0
    problems = _problems_for(spec)
    if not problems:
        return Check(name, NA, "-", "refused on every problem")
    for problem in problems:
        loop = engine_draws(problem, spec, s.chunk_draws, seed=s.seed, method="loop")
        vmap = engine_draws(problem, spec, s.chunk_draws, seed=s.seed, method="vmap")
        worst = max(worst, ((vmap - loop).abs().max() / loop.abs().max().clamp_min(1e-300)).item())
    verdict = PASS if worst <= EXACT_TOL else FAIL
    return Check(name, verdict, f"rel {_fmt(worst)}", f"{s.chunk_draws} draws")


def _finite_draws(spec: EstimatorSpec, logits: Tensor, method: str) -> bool:
    """16 draws at ``logits`` [V, K] finite (on V binary sites of logits ``logits[:, 0]`` where the
    estimator refuses K categories)."""
    problem = ToyCat(vars=logits.shape[0], categories=logits.shape[1], loss="quadratic", seed=3,
                     logits=logits, dtype=logits.dtype)
    try:
        J = engine_draws(problem, spec, 16, seed=0, method=method)
    except BiasvarError:
        J = engine_draws(binary_site(logits.shape[0], logits=logits[:, 0].clone()), spec, 16, seed=0, method=method)
    return bool(torch.isfinite(J).all())


EXTREME = torch.tensor([[60.0, -60.0, 80.0], [-80.0, 79.0, 0.0]], dtype=D)


def check_finite_logits(spec: EstimatorSpec, method: str) -> Check:
    name = "finite logits"
    bad = [str(dt).replace("torch.", "") for dt in (torch.float32, D)
           if not _finite_draws(spec, EXTREME.to(dt), method)]
    verdict = FAIL if bad else PASS
    return Check(name, verdict, "+-80", f"f32, f64; bad: {', '.join(bad) or 'none'}")


def _takes_t(spec: EstimatorSpec) -> bool:
    """Whether a plug-in's factory takes a keyword ``t`` (its default is then checked at the extremes)."""
    try:
        return "t" in inspect.signature(plugins.factory_of(spec.name)).parameters
    except (TypeError, ValueError):
        return False


def check_finite_t(spec: EstimatorSpec, method: str) -> Check:
    name = "finite t"
    if spec.get("t") is None and not (spec.plugin and _takes_t(spec)):
        return Check(name, NA, "-", "no temperature t")
    bad = []
    for t in (0.01, 100):
        hot = make_spec(spec.name, {**spec.as_dict(), "t": t})
        if not _finite_draws(hot, EXTREME / 4, method):
            bad.append(f"t={t:g}")
    verdict = FAIL if bad else PASS
    return Check(name, verdict, "t .01,100", f"logits +-20; bad: {', '.join(bad) or 'none'}")


def check_estimator(spec: str | EstimatorSpec, settings: Settings | None = None) -> list[Check]:
    """Every check of ``spec``, in table order (building a plug-in imports it: one-line errors)."""
    s = settings or Settings()
    spec = parse_spec(spec)
    est = build(spec)
    claimed = bool(spec.family.unbiased)
    method = "loop" if isinstance(est, UserPlugIn) and vmap_error(est) else "vmap"
    rows = [
        _guard("outcomes", lambda: check_outcomes(est, s)),
        _guard("gradient = y_fn(x)", lambda: check_y_fn(est, s)),
        _guard("bias quadratic", lambda: check_bias("quadratic", toy("quadratic"), spec, s)),
        _guard("bias quartic", lambda: check_bias("quartic", toy("quartic"), spec, s)),
        _guard("bias binary", lambda: check_bias("binary", binary_site(), spec, s)),
        _guard("unbiased", lambda: check_unbiased(spec, claimed, s)),
        _guard("chunking", lambda: check_chunking(spec, method, s)),
        _guard("vmap = loop", lambda: check_vmap(est, spec, s)),
        _guard("finite logits", lambda: check_finite_logits(spec, method)),
        _guard("finite t", lambda: check_finite_t(spec, method)),
    ]
    return rows


def passed(rows: Sequence[Check]) -> bool:
    return not any(r.status == FAIL for r in rows)


def table(spec: str, rows: Sequence[Check], width: int = 80) -> str:
    """The pass/fail table, ``width`` columns at most; a detail too long for its cell is cut there and
    given whole in the notes below the table."""
    lines = [f"check-estimator {spec}", f"{'check':<18} {'result':<6} {'value':<19} detail"]
    notes = []
    for r in rows:
        head = f"{r.name:<18} {r.status:<6} {r.value:<19} "
        room = width - len(head)
        if len(r.detail) > room:
            notes.append(textwrap.fill(f"{r.name}: {r.detail}", width, subsequent_indent="  "))
        lines.append(head + (r.detail if len(r.detail) <= room else r.detail[:max(0, room - 3)] + "..."))
    fails = sum(r.status == FAIL for r in rows)
    lines.append(f"FAIL: {fails} of {len(rows)} checks failed" if fails
                 else "pass: every check passed or does not apply")
    if notes:
        lines += ["notes:", *notes]
    return "\n".join(line[:width] for text in lines for line in text.splitlines())


__all__ = ["Check", "Settings", "binary_site", "check_estimator", "passed", "table", "toy"]
