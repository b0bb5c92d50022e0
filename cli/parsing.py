"""Command-line text -> library arguments: comma lists (``--save-at``, ``--hidden``), ``KEY=VALUE``
problem options (``-o``), and the model flags of ``train`` as :func:`biasvar.train.build_problem`'s
keyword options. Errors name the flag the text came from (a one-line :class:`SpecError`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from biasvar.errors import SpecError


def int_list(text: str | None, flag: str, example: str) -> tuple[int, ...]:
    """``"512,256"`` -> ``(512, 256)``; a one-line error naming ``flag`` otherwise."""
    if not text:
        return ()
    try:
        return tuple(int(e) for e in text.replace(" ", "").split(",") if e)
    except ValueError:
        raise SpecError(f"{flag} {text!r}: expected comma-separated integers, e.g. {example}") from None


def json_or_text(raw: str | None) -> Any:
    """An option's value: JSON when it parses (``8``, ``[16,8]``, ``0.5``), else the text."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def option_pairs(items: Iterable[str] | None) -> dict[str, Any]:
    """``-o KEY=VALUE`` (repeatable) -> {key: value} (keys with ``_`` for ``-``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--option {item!r}: expected KEY=VALUE, e.g. -o loss=quartic, -o hidden=[64]")
        out[key.strip().replace("-", "_")] = json_or_text(raw)
    return out


def model_options(*, categories: int | None = None, vars: int | None = None, hidden: str | None = None,
                  arch: str | None = None, weights_bits: str | None = None, acts_bits: str | None = None,
                  noise: str | None = None, extra: Iterable[str] | None = None) -> dict[str, Any]:
    """``train``'s model flags (text as typed) as keyword options of ``build_problem``.

    ``hidden`` is a comma list (vae); the qnet flags are JSON or text; ``extra`` are ``KEY=VALUE``
    pairs that override the rest. None values are left for ``build_problem`` to drop.
    """
    options: dict[str, Any] = {"categories": categories, "vars": vars, "arch": json_or_text(arch),
                               "weights_bits": json_or_text(weights_bits), "acts_bits": json_or_text(acts_bits),
                               "noise": json_or_text(noise)}
    if hidden is not None:
        options["hidden"] = list(int_list(hidden, "--hidden", "512,256")) or None
    options.update(option_pairs(extra))
    return options
