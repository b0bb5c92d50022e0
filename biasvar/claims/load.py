"""Reading a claims file (JSON) into claim objects, with one clear error line for a bad entry.

The format (``docs/claims.md``)::

    {"claims": [
      {"id": "mine-below-zgr", "kind": "less", "quantity": "variance", "a": "my-est", "b": "zgr",
       "words": "my estimator has lower V than ZGR", "where": "my notes"},
      {"id": "gs-1-over-t", "kind": "slope", "quantity": "variance", "run": "gs(t={t})",
       "t": [0.01, 0.0194, 0.0376], "low": -1.1, "high": -0.9, "words": "..."}
    ]}

Fields every entry has: ``id`` (unique), ``kind`` (:data:`~biasvar.claims.model.KINDS`),
``words``; optional ``where`` and ``note``. The rest depends on the kind (:mod:`biasvar.claims.model`).
Unknown fields are errors (a typo must not silently drop a condition). The paper's ledger ships
as ``biasvar/claims/paper.json`` (:func:`paper_path`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from biasvar.claims.model import (
    KINDS,
    QUANTITIES,
    Claim,
    ClaimsError,
    FloorClaim,
    FrontClaim,
    Margin,
    MonotoneClaim,
    PairClaim,
    RatioClaim,
    SlopeClaim,
)
from biasvar.errors import SpecError
from biasvar.spec import FAMILIES, parse_spec, plugin_name

COMMON = ("id", "kind", "words", "where", "note")
FIELDS: dict[str, tuple[str, ...]] = {
    "less": ("quantity", "a", "b", "t", "margin"),
    "greater": ("quantity", "a", "b", "t", "margin"),
    "equal": ("quantity", "a", "b", "t", "margin"),
    "floor": ("quantity", "run", "t", "value", "margin"),
    "monotone": ("quantity", "run", "t", "direction"),
    "slope": ("quantity", "run", "t", "low", "high"),
    "ratio": ("numerator", "denominator", "run", "t", "at_least"),
    "front": ("families", "unbiased", "members"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "less": ("a", "b"), "greater": ("a", "b"), "equal": ("a", "b", "margin"), "floor": ("run",),
    "monotone": ("run", "t", "direction"), "slope": ("run", "t"), "ratio": ("run", "at_least"),
    "front": ("families",),
}


def paper_path() -> Path:
    """The paper's ledger shipped with the package (``biasvar/claims/paper.json``)."""
    return Path(str(resources.files("biasvar.claims").joinpath("paper.json")))


def fill(template: str, t: float | None) -> str:
    """The canonical spec of ``template`` with ``{t}`` replaced by ``t``.

    >>> fill("gr-mc(t={t},M=100)", 0.01), fill("zgr", None)
    ('gr-mc(M=100,t=0.01)', 'zgr')
    """
    text = template if t is None else template.replace("{t}", repr(float(t)))
    return str(parse_spec(text))


def specs_of(template: str, ts: Sequence[float]) -> list[str]:
    """``template`` filled in for each t (itself alone when it holds no ``{t}``)."""
    if "{t}" not in template:
        return [fill(template, None)] * max(1, len(ts))
    return [fill(template, t) for t in ts]


class _Entry:
    """One entry of the file: reads its fields, and says which entry and field is wrong."""

    def __init__(self, raw: Any, index: int, source: str) -> None:
        self.source, self.index = source, index
        if not isinstance(raw, dict):
            raise self.error(None, f"expected an object {{...}}, got {type(raw).__name__}")
        self.raw = raw
        self.id = raw.get("id")

    def error(self, name: str | None, problem: str) -> ClaimsError:
        who = f"entry {self.index + 1}" + (f" (id {self.id!r})" if getattr(self, "id", None) else "")
        where = f", field {name!r}" if name else ""
        return ClaimsError(f"claims file {self.source}: {who}{where}: {problem}")

    def has(self, name: str) -> bool:
        return name in self.raw and self.raw[name] is not None

    def text(self, name: str, default: str | None = None) -> str:
        if not self.has(name):
            if default is None:
                raise self.error(name, "missing")
            return default
        v = self.raw[name]
        if not isinstance(v, str) or (default is None and not v.strip()):
            raise self.error(name, f"expected a non-empty string, got {v!r}")
        return v

    def number(self, name: str, default: float | None = None) -> float | None:
        if not self.has(name):
            return default
        v = self.raw[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.error(name, f"expected a finite number, got {v!r}")
        return float(v)

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str:
        v = self.text(name, default)
        if v not in choices:
            raise self.error(name, f"expected one of {', '.join(choices)}; got {v!r}")
        return v

    def flag(self, name: str, default: bool) -> bool:
        if not self.has(name):
            return default
        v = self.raw[name]
        if not isinstance(v, bool):
            raise self.error(name, f"expected true or false, got {v!r}")
        return v

    def families(self) -> tuple[str, ...]:
        v = self.raw["families"]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
            raise self.error("families", f"expected a non-empty list of estimator names, got {v!r}")
        out = []
        for x in v:
            if "(" in x:
                raise self.error("families", f"expected an estimator name without settings (e.g. 'st'), got {x!r}")
            name = x.strip().lower() if x.strip().lower() in FAMILIES else plugin_name(x)
            if name is None:
                raise self.error("families", f"unknown estimator {x!r}; expected one of: {', '.join(FAMILIES)}, or "
                                             "your own as module:function")
            out.append(name)
        return tuple(dict.fromkeys(out))

    def members(self) -> tuple[str, ...]:
        if not self.has("members"):
            return ()
        v = self.raw["members"]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise self.error("members", f"expected a non-empty list of specs, got {v!r}")
        try:
            return tuple(dict.fromkeys(fill(x, None) for x in v))
        except SpecError as err:
            raise self.error("members", str(err)) from None

    def temperatures(self) -> tuple[float, ...]:
        if not self.has("t"):
            return ()
        v = self.raw["t"]
        if not isinstance(v, list) or not v:
            raise self.error("t", f"expected a non-empty list of temperatures, got {v!r}")
        out = []
        for x in v:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and x > 0):
                raise self.error("t", f"expected temperatures > 0, got {x!r}")
            out.append(float(x))
        if len(set(out)) != len(out):
            raise self.error("t", "a temperature is listed twice")
        return tuple(out)

    def spec(self, name: str, ts: tuple[float, ...]) -> str:
        template = self.text(name)
        if "{t}" in template and not ts:
            raise self.error(name, f"spec {template!r} holds {{t}} but the entry has no 't' list")
        if ts and "{t}" not in template and name not in ("a", "b"):
            raise self.error(name, f"spec {template!r} has no {{t}} to fill in from the entry's 't' list")
        try:
            specs_of(template, ts)
        except SpecError as e:
            raise self.error(name, str(e)) from None
        return template

    def margin(self, required: bool) -> Margin | None:
        if not self.has("margin"):
            if required:
                raise self.error("margin", "missing (equal needs one: {\"rel\": 0.1} or {\"abs\": 1e-6})")
            return None
        v = self.raw["margin"]
        if not isinstance(v, dict) or not v or set(v) - {"abs", "rel", "of"}:
            raise self.error("margin", f"expected {{\"abs\": x}}, {{\"rel\": r}} or {{\"rel\": r, \"of\": SPEC}}, "
                                       f"got {v!r}")
        if ("abs" in v) == ("rel" in v):
            raise self.error("margin", "give exactly one of 'abs' and 'rel'")
        x = v.get("abs", v.get("rel"))
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and x >= 0):
            raise self.error("margin", f"expected a number >= 0, got {x!r}")
        of = v.get("of")
        if of is not None:
            if "rel" not in v or not isinstance(of, str):
                raise self.error("margin", "'of' (a spec) goes with 'rel' only")
            try:
                of = fill(of, None)
            except SpecError as e:
                raise self.error("margin", str(e)) from None
        return Margin(abs=float(x) if "abs" in v else None, rel=float(x) if "rel" in v else None, of=of)


def _claim(raw: Any, index: int, source: str) -> Claim:
    e = _Entry(raw, index, source)
    cid = e.text("id")
    kind = e.choice("kind", KINDS)
    unknown = sorted(set(e.raw) - set(COMMON) - set(FIELDS[kind]))
    if unknown:
        raise e.error(unknown[0], f"not a field of a {kind!r} claim (its fields: "
                                  f"{', '.join(COMMON + FIELDS[kind])})")
    for name in REQUIRED[kind]:
        if not e.has(name):
            raise e.error(name, f"missing (a {kind!r} claim needs {', '.join(REQUIRED[kind])})")
    base = dict(id=cid, kind=kind, words=e.text("words"), where=e.text("where", ""), note=e.text("note", ""))
    if kind == "front":
        fams = e.families()
        members = e.members()
        stray = [m for m in members if m.split("(", 1)[0] not in fams]
        if stray:
            raise e.error("members", f"{stray[0]} is not of the families ({', '.join(fams)})")
        return FrontClaim(**base, families=fams, unbiased=e.flag("unbiased", True), members=members)
    ts = e.temperatures()
    if kind in ("less", "greater", "equal"):
        a, b = e.spec("a", ts), e.spec("b", ts)
        if ts and "{t}" not in a + b:
            raise e.error("t", "neither 'a' nor 'b' holds {t}")
        if specs_of(a, ts) == specs_of(b, ts):
            raise e.error("b", "is the same run as 'a'")
        m = e.margin(required=kind == "equal")
        if m is not None and m.of is not None:
            raise e.error("margin", "'of' is for floor claims; for two runs 'rel' is of the larger estimate")
        if kind == "equal" and (m.abs or m.rel or 0.0) <= 0:
            raise e.error("margin", "equal needs a margin > 0")
        return PairClaim(**base, quantity=e.choice("quantity", QUANTITIES, "b2"), a=a, b=b, t=ts, margin=m)
    if kind == "floor":
        m = e.margin(required=False)
        if m is not None and m.rel is not None and m.of is None:
            raise e.error("margin", "a relative margin of one run needs 'of': the run whose estimate is the scale")
        return FloorClaim(**base, quantity=e.choice("quantity", QUANTITIES, "b2"), run=e.spec("run", ts), t=ts,
                          value=e.number("value", 0.0), margin=m)
    if kind in ("monotone", "slope") and len(ts) < 2:
        raise e.error("t", f"a {kind} claim needs at least 2 temperatures")
    if kind == "monotone":
        return MonotoneClaim(**base, quantity=e.choice("quantity", QUANTITIES, "b2"), run=e.spec("run", ts),
                             t=tuple(sorted(ts)), direction=e.choice("direction", ("increasing", "decreasing")))
    if kind == "slope":
        low, high = e.number("low"), e.number("high")
        if low is None and high is None:
            raise e.error("low", "give 'low', 'high' or both (the range the slope is claimed to lie in)")
        if low is not None and high is not None and low > high:
            raise e.error("high", f"is below 'low' ({high} < {low})")
        q = e.choice("quantity", QUANTITIES, "variance")
        if q == "b2":
            raise e.error("quantity", "a log-log slope needs a positive quantity: variance, mse or variance_x_cost")
        return SlopeClaim(**base, quantity=q, run=e.spec("run", ts), t=tuple(sorted(ts)), low=low, high=high)
    at_least = e.number("at_least")
    if at_least <= 0:
        raise e.error("at_least", f"expected a ratio > 0, got {at_least}")
    num, den = e.choice("numerator", QUANTITIES, "variance"), e.choice("denominator", QUANTITIES, "b2")
    if num == den:
        raise e.error("denominator", "is the same quantity as the numerator")
    return RatioClaim(**base, numerator=num, denominator=den, run=e.spec("run", ts), t=ts, at_least=at_least)


def parse_claims(data: Any, source: str = "<claims>") -> tuple[Claim, ...]:
    """Claims from parsed JSON: ``{"claims": [...]}`` or a bare list of entries."""
    entries = data.get("claims") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"claims", "title", "source", "schema", "note"}:
        extra = sorted(set(data) - {"claims", "title", "source", "schema", "note"})[0]
        raise ClaimsError(f"claims file {source}: unknown top-level field {extra!r} (expected 'claims', and "
                          f"optionally 'title', 'source', 'note', 'schema')")
    if not isinstance(entries, list) or not entries:
        raise ClaimsError(f"claims file {source}: expected {{\"claims\": [...]}} with at least one entry")
    claims = [_claim(raw, i, source) for i, raw in enumerate(entries)]
    seen: set[str] = set()
    for i, c in enumerate(claims):
        if c.id in seen:
            raise ClaimsError(f"claims file {source}: entry {i + 1} (id {c.id!r}), field 'id': used twice")
        seen.add(c.id)
    return tuple(claims)


def load_claims(path: str | Path | None = None) -> tuple[Claim, ...]:
    """Claims from a JSON file; the paper's ledger when ``path`` is None."""
    p = paper_path() if path is None else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ClaimsError(f"cannot read claims file {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ClaimsError(f"claims file {p}: not UTF-8 text (expected JSON)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ClaimsError(f"claims file {p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return parse_claims(data, str(p) if path is not None else "paper.json")


__all__ = ["fill", "load_claims", "paper_path", "parse_claims", "specs_of"]
