"""Named sweeps: the estimator grids of the paper's figures (App. B.4, B.6), and how a sweep's
estimators, reference and draws are resolved from a preset or a list (:func:`resolve_sweep`).

Each preset is a reference spec (the unbiased ``rf(M=4)``), the tested specs and the draws per
run. Temperatures are log-spaced as the paper says ("uniformly in the log space"), rounded to
three significant digits so the canonical specs (and file names) stay short, and every grid
with a temperature holds ``t = 2`` and ``t = 1.1``, the points Fig. 4 marks (empty circles,
squares).

* ``fig1`` (Fig. 1, App. B.4): t log-spaced in [0.01, 2] (9 points, plus 1 and 1.1) for ``gs``,
  ``gs-st``, ``gr-mc(M=10)``, ``gr-mc(M=100)``; ``zgr`` and ``st``.
* ``fig4`` (Fig. 4 left): fig1's grid, plus ``st(t)`` for t log-spaced in [1, 8] (plus 1.1),
  ``st-zgr(alpha)`` for alpha in {0, 0.2, ..., 1} at t = 1 and t = 2, ``rf(M=2)`` and ``rf(M=4)``
  as a tested point (a second run, seed + 1, independent of the reference run).
* ``fig4-quant`` (Fig. 4 right, App. B.6): the GS family on t in [0.1, 2]; ``st(t)`` on [1, 8] and
  "ST < 1" on [0.5, 1]; ``st-zgr(alpha)`` at t = 1 (the interpolation between ST(1) and ZGR);
  ``zgr``, ``rf(M=2)``, ``rf(M=4)``; 4e5 reference draws and 4e4 per tested estimator.
* ``fig4-extended``: fig4's grid plus the newer estimators side by side with ZGR: ``reinmax(t)``
  on the ``st(t)`` temperatures ([1, 8], with 1.1; t = 1 is ZGR, a check), and the unbiased
  ``arsm`` and ``indecater`` as points (their cost per draw depends on the model: 121 and 241
  forward passes on the Fig. 1 VAE, 16 x 16, against 4 for ``rf(M=4)``).
* ``quick``: a handful of estimators and few draws, for smoke tests and the demo.

:func:`protocol_specs` thins the Fig. 1 / Fig. 4 grids for reduced runs of ``biasvar reproduce``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from biasvar.errors import SpecError
from biasvar.names import REPRODUCE_FIGURES
from biasvar.spec import parse_spec

REFERENCE = "rf(M=4)"
MARKED_T = (1.1, 2.0)  # Fig. 4: empty circles at t = 2, squares at t = 1.1


def log_grid(low: float, high: float, points: int, *, digits: int = 3,
             extra: Iterable[float] = ()) -> list[float]:
    """``points`` values log-spaced in [low, high], rounded to ``digits`` significant digits, with
    ``extra`` values inside [low, high] added; sorted, without duplicates.

    >>> log_grid(1, 8, 4)
    [1.0, 2.0, 4.0, 8.0]
    """
    out = set()
    for i in range(points):
        v = math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / max(1, points - 1))
        out.add(float(f"{v:.{digits}g}"))
    out.update(float(e) for e in extra if low <= e <= high)
    return sorted(out)


def _canon(specs: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for s in specs:
        seen.setdefault(str(parse_spec(s)), None)
    return tuple(seen)


def _gs_family(ts: Iterable[float]) -> list[str]:
    ts = list(ts)
    return ([f"gs(t={t})" for t in ts] + [f"gs-st(t={t})" for t in ts]
            + [f"gr-mc(t={t},M=10)" for t in ts] + [f"gr-mc(t={t},M=100)" for t in ts])


ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
T_GS = log_grid(0.01, 2, 9, extra=(1.0, *MARKED_T))  # t = 1: GS-ST(t = 1), as in Fig. 1
T_ST = log_grid(1, 8, 7, extra=MARKED_T)
T_GS_QUANT = log_grid(0.1, 2, 7, extra=MARKED_T)
T_ST_BELOW_1 = log_grid(0.5, 1, 4)


@dataclass(frozen=True)
class Sweep:
    """A resolved sweep: its name, reference spec, tested specs (canonical) and draws per run."""

    name: str
    reference: str
    specs: tuple[str, ...]
    n: int
    reference_n: int


@dataclass(frozen=True)
class Preset(Sweep):
    """A named sweep (the fields of :class:`Sweep`) and what it is for, in words."""

    description: str


def _fig1() -> tuple[str, ...]:
    return _canon([*_gs_family(T_GS), "zgr", "st"])


def _fig4() -> tuple[str, ...]:
    return _canon([
        *_fig1(),
        *[f"st(t={t})" for t in T_ST],
        *[f"st-zgr(alpha={a},t={t})" for t in (1, 2) for a in ALPHAS],
        "rf(M=2)", REFERENCE,
    ])


def _fig4_quant() -> tuple[str, ...]:
    return _canon([
        *_gs_family(T_GS_QUANT),
        *[f"st(t={t})" for t in sorted(set(T_ST) | set(T_ST_BELOW_1))],
        *[f"st-zgr(alpha={a},t=1)" for a in ALPHAS],
        "zgr", "rf(M=2)", REFERENCE,
    ])


def _fig4_extended() -> tuple[str, ...]:
    return _canon([*_fig4(), *[f"reinmax(t={t})" for t in T_ST], "arsm", "indecater"])


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "fig1": Preset("fig1", REFERENCE, _fig1(), 10_000, 10_000,
                   "Fig. 1: GS, GS-ST, GR-MC(10), GR-MC(100) vs t in [0.01, 2]; ZGR, ST; reference RF(4)"),
    "fig4": Preset("fig4", REFERENCE, _fig4(), 10_000, 10_000,
                   "Fig. 4 left: fig1 + ST(t) on [1, 8], ST-ZGR(alpha) at t = 1, 2, RF(2), RF(4)"),
    "fig4-quant": Preset("fig4-quant", REFERENCE, _fig4_quant(), 40_000, 400_000,
                         "Fig. 4 right / App. B.6: GS family on [0.1, 2], ST(t) on [0.5, 8], ST-ZGR(alpha), "
                         "ZGR, RF(2), RF(4)"),
    "fig4-extended": Preset("fig4-extended", REFERENCE, _fig4_extended(), 10_000, 10_000,
                            "Fig. 4 left + ReinMax(t) on [1, 8]; ARSM and IndeCateR (unbiased, costly) as points"),
    "quick": Preset("quick", REFERENCE, _canon(["zgr", "st", "gs-st(t=0.5)", "gr-mc(t=0.1,M=10)", "rf(M=2)"]),
                    500, 500, "smoke test: five estimators, 500 draws each"),
})


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises :class:`SpecError` listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}") from None


def preset_specs(name: str) -> tuple[str, list[str]]:
    """``(reference_spec, [tested specs])`` of a preset, canonical strings."""
    p = get_preset(name)
    return p.reference, list(p.specs)


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs, ignoring the commas inside parentheses.

    >>> split_specs("zgr, gr-mc(t=0.1,M=100),rf(M=4)")
    ['zgr', 'gr-mc(M=100,t=0.1)', 'rf(M=4)']
    """
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(f"unbalanced ')' in estimator list {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise SpecError(f"unbalanced '(' in estimator list {text!r}")
    parts.append("".join(cur))
    specs = [p.strip() for p in parts if p.strip()]
    if not specs:
        raise SpecError(f"no estimator in {text!r}; expected e.g. 'zgr,gr-mc(t=0.1,M=100),rf(M=4)'")
    return [str(parse_spec(s)) for s in specs]


DEFAULT_N = 10_000  # draws per run of a sweep given as a list


def resolve_sweep(preset: str | None = None, estimators: str | Iterable[str] | None = None, *,
                  reference: str | None = None, n: int | None = None, reference_n: int | None = None,
                  name: str | None = None) -> Sweep:
    """Exactly one of a preset's name or an estimator list (comma-separated text or specs), with
    optional overrides.

    A preset gives its reference, ``n`` and ``reference_n``; ``n`` overrides both unless
    ``reference_n`` is given. A list has the reference :data:`REFERENCE`, ``n`` = ``DEFAULT_N`` and
    ``reference_n`` = ``n`` unless given; its name is ``custom``.
    """
    if (preset is None) == (estimators is None):
        raise SpecError(f"give exactly one of --preset ({', '.join(PRESETS)}) or --estimators")
    if preset is not None:
        p = get_preset(preset)
        n_tested = n or p.n
        n_ref = reference_n or (p.reference_n if n is None else n)
        return Sweep(name or p.name, str(parse_spec(reference or p.reference)), p.specs, n_tested, n_ref)
    specs = split_specs(estimators) if isinstance(estimators, str) else list(_canon(estimators))
    n_tested = n or DEFAULT_N
    return Sweep(name or "custom", str(parse_spec(reference or REFERENCE)), tuple(specs), n_tested,
                 reference_n or n_tested)


# ---------------------------------------------------------------------------------------------
# the grids of `biasvar reproduce`

FIGURES = REPRODUCE_FIGURES


def protocol_specs(what: str, points: int | None = None) -> list[str]:
    """Tested specs of ``fig1``, ``fig4`` or ``all``; ``points`` thins every hyper-parameter grid
    to that many log-spaced values (plus t = 1.1 and t = 2, which Fig. 4 marks)."""
    if what not in FIGURES:
        raise SpecError(f"unknown figure {what!r}; expected one of: {', '.join(FIGURES)}")
    if points is None:
        names = ("fig1", "fig4") if what == "all" else (what,)
        specs = [s for name in names for s in preset_specs(name)[1]]
    else:
        if points < 2:
            raise SpecError(f"points must be at least 2, got {points}")
        t_gs = log_grid(0.01, 2, points, extra=MARKED_T)
        specs = [f"{fam}(t={t})" for fam in ("gs", "gs-st") for t in t_gs]
        specs += [f"gr-mc(t={t},M={M})" for M in (10, 100) for t in t_gs] + ["zgr", "st"]
        if what in ("fig4", "all"):
            alphas = sorted({ALPHAS[round(i * (len(ALPHAS) - 1) / (points - 1))] for i in range(points)})
            specs += [f"st(t={t})" for t in log_grid(1, 8, points, extra=MARKED_T)]
            specs += [f"st-zgr(alpha={a},t={t})" for t in (1, 2) for a in alphas]
            specs += ["rf(M=2)", REFERENCE]
    return list(_canon(specs))


def is_slow(spec: str) -> bool:
    """The costly ``gr-mc(M >= 100)`` runs (``biasvar reproduce --slow-n``)."""
    s = parse_spec(spec)
    return s.name == "gr-mc" and int(s["M"]) >= 100
