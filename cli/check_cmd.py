"""``biasvar check-estimator SPEC``: the conformance check of an estimator (built-in or your own)."""

from __future__ import annotations

from typing import Annotated

import typer

from .options import Opt


def check_estimator_cmd(
    spec: Annotated[str, typer.Argument(help="Estimator spec: zgr, or your own, e.g. "
                                             "'my_est.py:make(t=0.5)'.")],
    draws: Annotated[int, Opt("--n", min=100, help="Draws of the outcome and unbiasedness checks.")] = 4000,
    seed: Annotated[int, Opt("--seed", min=0, help="Seed of the noise of the checks.")] = 0,
) -> None:
    """Run SPEC through the checks every built-in estimator passes; exit 1 if one fails.

    Outcomes and gradients by exact enumeration on toy problems and a binary site, its bias where the
    loss is quadratic and where it is not, unbiasedness where it claims it, identical draws across
    chunkings, vmap against the loop, finite values at extreme logits and temperatures.
    """
    import torch  # the check imports torch when it runs, not when the CLI starts

    from biasvar.conformance import Settings, check_estimator, passed, table
    from biasvar.spec import parse_spec

    torch.set_num_threads(min(torch.get_num_threads(), 4))
    s = Settings(outcome_draws=draws, unbiased_draws=draws, bias_draws=max(100, draws // 2), seed=seed)
    rows = check_estimator(spec, s)
    typer.echo(table(str(parse_spec(spec)), rows))
    if not passed(rows):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("check-estimator")(check_estimator_cmd)
