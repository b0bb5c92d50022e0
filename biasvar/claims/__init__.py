"""Claims ledger: statements about estimators ("A has lower V than B", "A equals B within 10%",
"V grows as 1/t") decided from analysed runs, as verdicts with the numbers behind them.

* :mod:`biasvar.claims.model` — the claim types (frozen dataclasses), checks, verdicts, the ledger;
* :mod:`biasvar.claims.load` — a claims file (JSON) into claims, one error line for a bad entry;
  the paper's ledger ships as ``paper.json`` (:func:`paper_path`);
* :mod:`biasvar.claims.planning` — :func:`plan`: contrasts to compute, missing runs, family size;
* :mod:`biasvar.claims.kinds` — the rules: the checks of one claim of each kind, from rows and contrasts;
* :mod:`biasvar.claims.evaluate` — :func:`evaluate`: the ledger's verdicts from report rows and paired contrasts;
* :mod:`biasvar.claims.write` — ``claims.json`` and ``claims.md``.

``biasvar claims`` (``cli/claims_cmd.py``) runs them on a runs folder; the format and the rules are
in ``docs/claims.md``.
"""

from biasvar.claims.evaluate import evaluate, evaluate_report, family_statement
from biasvar.claims.kinds import wls_slope
from biasvar.claims.load import fill, load_claims, paper_path, parse_claims, specs_of
from biasvar.claims.model import (
    CONTRADICTED,
    CORRECTIONS,
    KINDS,
    NOT_MEASURED,
    QUANTITIES,
    SUPPORTED,
    UNDECIDED,
    VERDICTS,
    Check,
    Claim,
    ClaimResult,
    ClaimsError,
    FloorClaim,
    Ledger,
    Margin,
    MonotoneClaim,
    PairClaim,
    RatioClaim,
    SlopeClaim,
)
from biasvar.claims.planning import Plan, plan
from biasvar.claims.write import ledger_to_json, ledger_to_markdown, summary_line

__all__ = ["CONTRADICTED", "CORRECTIONS", "KINDS", "NOT_MEASURED", "QUANTITIES", "SUPPORTED", "UNDECIDED",
           "VERDICTS", "Check", "Claim", "ClaimResult", "ClaimsError", "FloorClaim", "Ledger", "Margin",
           "MonotoneClaim", "PairClaim", "Plan", "RatioClaim", "SlopeClaim", "evaluate", "evaluate_report",
           "family_statement", "fill", "ledger_to_json", "ledger_to_markdown", "load_claims", "paper_path",
           "parse_claims", "plan", "specs_of", "summary_line", "wls_slope"]
