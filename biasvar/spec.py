"""Estimator spec grammar: ``name`` or ``name(key=value, ...)``, e.g. ``gr-mc(t=0.1,M=100)``.

One grammar everywhere (CLI, run files, reports, plots). :func:`parse_spec` accepts the keyword
form, the sheet's positional form (``gr-mc(0.1, 100)``) and a mix of the two;
``str(spec)`` prints the canonical form (sorted keys, normalised numbers, defaults filled in
where the parameter is always shown, left out where it is not), which round-trips.

>>> str(parse_spec("gr-mc(0.10, 1e2)"))
'gr-mc(M=100,t=0.1)'
>>> str(parse_spec("st(t=1)"))
'st'

A *plug-in* estimator (the user's own, :mod:`biasvar.plugins`) is named by an import path,
``mypkg.est:make(t=0.5)`` or ``path/est.py:make(t=0.5)``, or by a name registered with
``biasvar.register_estimator``. Its parameters are keyword numbers passed to the factory; the
canonical form shows all of them, sorted (``est.py:make(M=4,t=0.5)``). Parsing imports nothing:
only :attr:`EstimatorSpec.family` (and building the estimator) calls the factory.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from biasvar import plugins
from biasvar.errors import SpecError

Number = int | float


@dataclass(frozen=True)
class Param:
    """One hyper-parameter of an estimator family."""

    key: str
    kind: type  # int or float
    low: float  # inclusive or exclusive lower bound, see low_open
    high: float = math.inf
    low_open: bool = False
    default: Number | None = None  # None: required
    always: bool = False  # printed in the canonical form even when equal to the default
    doc: str = ""
    #: a hard limit past ``high`` (not shown in the summary): what a run can hold at all, see :data:`M_LIMIT`
    limit: float = math.inf

    def check(self, name: str, value: Any) -> Number:
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise SpecError(f"{name}: {self.key}={value!r} is not a number; {self.describe()}") from None
        if not math.isfinite(num):
            raise SpecError(f"{name}: {self.key}={value!r} must be finite; {self.describe()}")
        if self.kind is int:
            if num != round(num):
                raise SpecError(f"{name}: {self.key}={value!r} must be an integer; {self.describe()}")
            num = int(round(num))
        if num > self.limit:
            raise SpecError(f"{name}: {self.key}={value} is beyond the limit {_fmt(self.limit)} (the noise of one "
                            f"draw is addressed by 31 bits); {self.describe()}")
        too_low = num <= self.low if self.low_open else num < self.low
        if too_low or num > self.high:
            raise SpecError(f"{name}: {self.key}={_fmt(num)} is out of range; {self.describe()}")
        return num

    def short(self) -> str:
        """E.g. ``t > 0 (1)`` or ``0 <= alpha <= 1``."""
        op = ">" if self.low_open else ">="
        rng = f"{self.key} {op} {_fmt(self.low)}"
        if not math.isinf(self.high):
            rng = f"{_fmt(self.low)} <= {self.key} <= {_fmt(self.high)}"
        if self.kind is int:
            rng += " int"
        return rng if self.default is None else f"{rng} ({_fmt(self.default)})"

    def describe(self) -> str:
        lo = f"{self.key} > {_fmt(self.low)}" if self.low_open else f"{self.key} >= {_fmt(self.low)}"
        rng = lo if math.isinf(self.high) else f"{lo} and <= {_fmt(self.high)}"
        typ = "integer" if self.kind is int else "number"
        dflt = "" if self.default is None else f", default {_fmt(self.default)}"
        return f"expected {typ} with {rng}{dflt}"


@dataclass(frozen=True)
class Family:
    """An estimator family: its parameters (in positional order) and what the docs say of it."""

    name: str
    params: tuple[Param, ...]
    equation: str
    summary: str
    score_function: bool = False
    #: forward passes per gradient sample: "1", "M", or a rule in the problem's nodes (K categories,
    #: V variables per data point), for estimators whose cost depends on the problem
    cost_rule: str = "1"
    unbiased: bool = False  # usable as a --reference

    def param(self, key: str) -> Param | None:
        for p in self.params:
            if p.key == key or p.key.lower() == key.lower():
                return p
        return None


#: The largest M of any family: the noise elements of one draw are addressed by 31 bits
#: (:mod:`biasvar.rng`), so a larger M cannot be drawn at all (memory limits it far earlier).
M_LIMIT = 2**31 - 1

_T_REQ = Param("t", float, 0.0, low_open=True, doc="temperature")
_T_OPT = Param("t", float, 0.0, low_open=True, default=1.0, doc="temperature (1 = plain ST)")

FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        "st": Family("st", (_T_OPT,), "Eq. 4; Sec. 4.2", "straight-through, d = softmax(logp / t)"),
        "darn": Family("darn", (), "Eq. 5", "DARN with mean embedding phi_bar = p"),
        "zgr": Family("zgr", (), "Eq. 12-14", "zero-temperature Gumbel-Rao = (ST + DARN) / 2"),
        "st-zgr": Family(
            "st-zgr",
            (Param("alpha", float, 0.0, 1.0, doc="interpolation weight"), _T_OPT),
            "Eq. 17",
            "(1 - alpha) ST(t) + alpha ZGR",
        ),
        "st-zgr-author": Family(
            "st-zgr-author",
            (Param("alpha", float, 0.0, 1.0, doc="interpolation weight"), _T_OPT),
            "Eq. 17, author's code",
            "(1 - alpha) ST + alpha ZGR, all at t' = (1 - alpha) t + alpha",
        ),
        "gs": Family("gs", (_T_REQ,), "Eq. 7", "Gumbel-Softmax, relaxed forward value"),
        "gs-st": Family("gs-st", (_T_REQ,), "Eq. 8", "straight-through Gumbel-Softmax"),
        "gr-mc": Family(
            "gr-mc",
            (_T_REQ, Param("M", int, 1, default=100, always=True, doc="MC samples of G|x", limit=M_LIMIT)),
            "Eq. 9",
            "Gumbel-Rao, M Monte Carlo samples of G | x",
        ),
        "rf": Family(
            "rf",
            (Param("M", int, 2, default=4, always=True, doc="samples per data point", limit=M_LIMIT),),
            "Kool et al. 2019, Eq. 8",
            "REINFORCE with leave-one-out baseline (unbiased)",
            score_function=True,
            cost_rule="M",
            unbiased=True,
        ),
        "reinmax": Family(
            "reinmax",
            (Param("t", float, 0.0, low_open=True, default=1.0, doc="temperature (1 = ZGR)"),),
            "Liu et al. 2023 (NeurIPS), Alg. 2",
            "ReinMax: second-order (Heun) straight-through",
        ),
        "arsm": Family(
            "arsm", (), "Yin et al. 2019 (ICML)",
            "augment-REINFORCE-swap-merge, pseudo-action swaps (unbiased)",
            score_function=True, cost_rule="1 + K(K-1)/2 per node", unbiased=True,
        ),
        "indecater": Family(
            "indecater", (), "De Smet et al. 2023 (NeurIPS)",
            "IndeCateR: every category of every variable (unbiased)",
            score_function=True, cost_rule="1 + V(K-1) per node", unbiased=True,
        ),
        "disarm": Family(
            "disarm", (), "Dong et al. 2020 (NeurIPS)",
            "DisARM antithetic pair, K = 2 only (unbiased)",
            score_function=True, cost_rule="1 + 1 per node", unbiased=True,
        ),
    }
)


def _fmt(value: Number) -> str:
    """Normalised number: integers without a point, floats in shortest '%.12g' form."""
    if isinstance(value, int):
        return str(value)
    out = f"{value:.12g}"
    return out


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator family with its hyper-parameters; ``str(spec)`` is the canonical form."""

    name: str
    params: tuple[tuple[str, Number], ...] = ()

    def __str__(self) -> str:
        if self.plugin:
            inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params))
            return f"{self.name}({inner})" if inner else self.name
        family = FAMILIES[self.name]
        shown = []
        for key, value in self.params:
            p = family.param(key)
            assert p is not None
            if p.always or p.default is None or value != p.default:
                shown.append((key, value))
        if not shown:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(shown))
        return f"{self.name}({inner})"

    def __getitem__(self, key: str) -> Number:
        return dict(self.params)[key]

    def get(self, key: str, default: Number | None = None) -> Number | None:
        return dict(self.params).get(key, default)

    def as_dict(self) -> dict[str, Number]:
        return dict(self.params)

    @property
    def plugin(self) -> bool:
        """True for the user's own estimator (an import path or a registered name)."""
        return self.name not in FAMILIES

    @property
    def family(self) -> Family:
        """The family; a plug-in's is made from what its factory returns (which imports its module)."""
        if not self.plugin:
            return FAMILIES[self.name]
        made = plugins.make(self.name, self.as_dict(), str(self))
        return Family(self.name, (), "plug-in", made.summary or "user estimator", cost_rule=str(made.cost),
                      unbiased=bool(made.unbiased))

    @property
    def cost(self) -> int:
        """Forward passes of the model per gradient sample (where it does not depend on the problem;
        else see ``biasvar.problems.base.passes``)."""
        rule = self.family.cost_rule
        if rule == "M":
            return int(self["M"])
        if rule.isdigit():
            return int(rule)
        raise SpecError(f"{self}: cost depends on the problem ({rule} forward passes per draw)")

    @property
    def score_function(self) -> bool:
        return self.family.score_function


_SPEC_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*|[^\s()]+:[A-Za-z_][A-Za-z0-9_.]*)\s*(?:\((.*)\))?\s*$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _unknown_name(name: str) -> SpecError:
    return SpecError(f"unknown estimator {name!r}; expected one of: {', '.join(FAMILIES)}, "
                     f"or your own as module:function or file.py:function (a name given by "
                     f"biasvar.register_estimator is known only in the process that registered it)")


def plugin_name(raw: str) -> str | None:
    """The canonical plug-in name of ``raw`` (an import path, or a registered name), else None."""
    raw = raw.strip()
    if raw.lower() in FAMILIES:
        return None
    if plugins.is_import_path(raw):
        module, _, attr = raw.rpartition(":")
        if "/" in module or module.endswith(".py"):
            module = posixpath.normpath(module)
        return f"{module}:{attr}"
    return raw.lower() if plugins.is_registered(raw.lower()) else None


def _plugin_value(name: str, key: str, raw: Any) -> Number:
    """A plug-in parameter: a finite number (an integral value is an int, so ``t=2.0`` is ``t=2``)."""
    if not _KEY_RE.match(key):
        raise SpecError(f"{name}: parameter {key!r} is not a name")
    if isinstance(raw, bool):
        raise SpecError(f"{name}: {key}={raw!r} is not a number (plug-in parameters are numbers)")
    num = raw if isinstance(raw, int | float) else _number(str(raw).strip())
    if num is None:
        raise SpecError(f"{name}: {key}={raw!r} is not a number (plug-in parameters are numbers)")
    if not math.isfinite(num):
        raise SpecError(f"{name}: {key}={raw!r} must be finite")
    if isinstance(num, float) and num == round(num) and abs(num) < 2**53:
        num = int(num)
    return num


def _number(text: str) -> Number | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None


def _plugin_spec(name: str, values: Mapping[str, Any]) -> EstimatorSpec:
    checked = {key: _plugin_value(name, key, value) for key, value in values.items()}
    return EstimatorSpec(name, tuple(sorted(checked.items())))


def make_spec(name: str, values: Mapping[str, Any]) -> EstimatorSpec:
    """Build a checked spec from a family name and ``{key: value}``; fills in defaults."""
    plugin = plugin_name(name)
    if plugin is not None:
        return _plugin_spec(plugin, values)
    name = name.strip().lower()
    family = FAMILIES.get(name)
    if family is None:
        raise _unknown_name(name)
    checked: dict[str, Number] = {}
    for key, value in values.items():
        p = family.param(key)
        if p is None:
            valid = ", ".join(p.key for p in family.params) or "none"
            raise SpecError(f"{name}: unknown parameter {key!r}; valid parameters: {valid}")
        checked[p.key] = p.check(name, value)
    for p in family.params:
        if p.key not in checked:
            if p.default is None:
                raise SpecError(f"{name}: missing required parameter {p.key!r} ({p.describe()})")
            checked[p.key] = p.kind(p.default)
    order = [p.key for p in family.params]
    return EstimatorSpec(name, tuple((k, checked[k]) for k in order))


def _split(text: str) -> tuple[str, dict[str, str]]:
    """Family name and the explicitly given ``{key: raw value}`` of a spec string."""
    m = _SPEC_RE.match(text or "")
    if not m:
        raise SpecError(f"cannot parse estimator spec {text!r}; expected e.g. 'zgr', 'gr-mc(t=0.1,M=100)'")
    plugin, inner = plugin_name(m.group(1)), m.group(2)
    if plugin is not None:
        return plugin, _plugin_values(text, plugin, inner)
    name = m.group(1).lower()
    family = FAMILIES.get(name)
    if family is None:
        raise _unknown_name(name)
    values: dict[str, str] = {}
    if inner is not None and inner.strip():
        for pos, item in enumerate(inner.split(",")):
            item = item.strip()
            if not item:
                raise SpecError(f"{text!r}: empty argument; expected e.g. {example(name)}")
            if "=" in item:
                key, _, val = item.partition("=")
                key = key.strip()
            else:
                if pos >= len(family.params):
                    raise SpecError(f"{text!r}: too many values; {name} takes {_signature(family)}")
                key, val = family.params[pos].key, item
            p = family.param(key)
            if p is None:
                valid = ", ".join(q.key for q in family.params) or "none"
                raise SpecError(f"{name}: unknown parameter {key!r}; valid parameters: {valid}")
            if p.key in values:
                raise SpecError(f"{text!r}: parameter {p.key!r} given twice")
            values[p.key] = val.strip()
    return name, values


def _plugin_values(text: str, name: str, inner: str | None) -> dict[str, str]:
    """``k=v`` items of a plug-in spec (keyword only: a plug-in has no positional order)."""
    values: dict[str, str] = {}
    for item in (inner or "").split(",") if inner and inner.strip() else ():
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SpecError(f"{text!r}: plug-in parameters are keyword numbers, e.g. {name}(t=0.5)")
        if key in values:
            raise SpecError(f"{text!r}: parameter {key!r} given twice")
        values[key] = val.strip()
    return values


def parse_spec(text: str | EstimatorSpec) -> EstimatorSpec:
    """Parse ``name``, ``name(k=v,...)`` or the positional ``name(v1, v2)`` into a spec."""
    if isinstance(text, EstimatorSpec):
        return text
    return make_spec(*_split(text))


def spec_from_flags(estimator: str, **flags: Any) -> EstimatorSpec:
    """The CLI flag form: ``--estimator gr-mc --t 0.1 --M 100`` (flags left as None are absent).

    ``estimator`` may itself be a full spec string; a flag that repeats one of its values with a
    different number is an error.
    """
    name, values = _split(estimator)
    merged: dict[str, Any] = dict(values)
    if name not in FAMILIES:  # a plug-in: a flag is one more keyword number
        for key, value in flags.items():
            if value is not None and key in merged and _plugin_value(name, key, merged[key]) != value:
                raise SpecError(f"{name}: {key} given twice ({merged[key]} in the spec, {value} as a flag)")
            merged.update({key: value} if value is not None else {})
        return make_spec(name, merged)
    family = FAMILIES[name]
    for key, value in flags.items():
        if value is None:
            continue
        p = family.param(key)
        if p is None:
            valid = ", ".join(q.key for q in family.params) or "none"
            raise SpecError(f"{name}: option --{key} does not apply; valid options: {valid}")
        if p.key in merged and p.check(name, merged[p.key]) != p.check(name, value):
            raise SpecError(f"{name}: {p.key} given twice ({merged[p.key]} in the spec, {value} as a flag)")
        merged[p.key] = value
    return make_spec(name, merged)


def _signature(family: Family) -> str:
    return f"({', '.join(p.key for p in family.params)})" if family.params else "no parameters"


def example(name: str) -> str:
    family = FAMILIES[name]
    if not family.params:
        return name
    vals = {"t": 2 if name == "reinmax" else 0.5, "M": 10, "alpha": 0.5}  # ReinMax's authors advise t >= 1
    return f"{name}(" + ",".join(f"{p.key}={vals.get(p.key, 1)}" for p in family.params) + ")"
