"""``biasvar claims --compare``: ledgers of independent runs compared claim by claim (issue 22, item 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from biasvar_cli.main import app
from typer.testing import CliRunner

from biasvar.claims import compare as K
from biasvar.claims.model import ClaimsError

ROOT = Path(__file__).resolve().parents[1]


def _ledger(verdicts: dict[str, str]) -> dict:
    return {"claims": [{"id": k, "verdict": v, "reason": f"{k} was {v}"} for k, v in verdicts.items()]}


A = {"c-agree": "supported", "c-agree2": "contradicted", "c-flip": "supported", "c-half": "undecided",
     "c-none": "undecided", "c-nm": "not measured", "c-nm-all": "not measured", "c-only-a": "supported"}
B = {"c-agree": "supported", "c-agree2": "contradicted", "c-flip": "contradicted", "c-half": "supported",
     "c-none": "undecided", "c-nm": "supported", "c-nm-all": "not measured"}


def test_every_class_is_assigned_as_defined():
    rows = {r.claim_id: r.status for r in K.compare_ledgers([_ledger(A), _ledger(B)])}
    assert rows == {"c-agree": K.AGREE, "c-agree2": K.AGREE, "c-flip": K.DISAGREE, "c-half": K.UNDECIDED_SOME,
                    "c-none": K.UNDECIDED_ALL, "c-nm": K.NOT_MEASURED_SOME, "c-nm-all": K.NOT_MEASURED_ALL,
                    "c-only-a": K.NOT_MEASURED_SOME}
    assert sum(K.counts(K.compare_ledgers([_ledger(A), _ledger(B)])).values()) == len(A)


def test_a_disagreement_among_three_ledgers_is_found_whatever_their_order():
    for order in ([A, A, B], [B, A, A], [A, B, A]):
        rows = {r.claim_id: r.status for r in K.compare_ledgers([_ledger(x) for x in order])}
        assert rows["c-flip"] == K.DISAGREE and rows["c-agree"] == K.AGREE


def test_markdown_names_both_verdicts_and_the_numbers_of_a_disagreement():
    rows = K.compare_ledgers([_ledger(A), _ledger(B)])
    md = K.comparison_markdown(rows, ["seed 0", "seed 1"])
    assert "| c-flip | supported | contradicted | disagree |" in md
    assert "| c-only-a | supported | absent | not measured in some |" in md
    assert "c-flip was supported" in md and "c-flip was contradicted" in md
    assert md.startswith("8 claims: 2 agree, 1 disagree, 1 undecided in some, 1 undecided in all, "
                         "2 not measured in some, 1 not measured in all")


def test_one_ledger_or_a_malformed_file_is_an_error(tmp_path):
    with pytest.raises(ClaimsError):
        K.compare_ledgers([_ledger(A)])
    bad = tmp_path / "bad.json"
    bad.write_text('{"claims": [{"id": "x"}]}')
    with pytest.raises(ClaimsError, match="without an id or a verdict"):
        K.read_ledger(bad)
    bad.write_text("not json")
    with pytest.raises(ClaimsError, match="not JSON"):
        K.read_ledger(bad)


def _write(tmp_path, name, verdicts):
    p = tmp_path / name
    p.write_text(json.dumps(_ledger(verdicts)))
    return p


def test_cli_writes_the_comparison_and_refuses_bad_input_in_one_line(tmp_path):
    a, b = _write(tmp_path, "a.json", A), _write(tmp_path, "b.json", B)
    r = CliRunner().invoke(app, ["claims", "--compare", str(a), "--compare", str(b), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert doc["counts"][K.DISAGREE] == 1 and {c["id"]: c["comparison"] for c in doc["claims"]}["c-flip"] == K.DISAGREE
    assert "| c-flip | supported | contradicted | disagree |" in (tmp_path / "cmp" / "comparison.md").read_text()
    for args in (["--compare", str(a)], ["--compare", str(a), "--compare", str(tmp_path / "missing.json")]):
        p = subprocess.run([sys.executable, "-m", "biasvar_cli.main", "claims", *args], capture_output=True, text=True,
                           cwd=ROOT)
        assert p.returncode != 0
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_the_committed_cpu_ledgers_agree_with_each_other():
    """The paper's ledger and its temperature subset, on the same store, cannot disagree."""
    base = ROOT / "results" / "claims-cpu"
    rows = K.compare_ledgers([K.read_ledger(base / "subset-ledger" / "claims.json"),
                              K.read_ledger(base / "paper-ledger" / "claims.json")])
    assert not [r for r in rows if r.status == K.DISAGREE]


def test_the_committed_comparisons_are_those_of_the_committed_ledgers():
    """Each committed comparison.json is what comparing its ledgers gives now (not stale)."""
    found = sorted((ROOT / "results").glob("**/comparison.json"))
    assert found
    for path in found:
        doc = json.loads(path.read_text())
        rows = K.compare_ledgers([K.read_ledger(ROOT / p) for p in doc["ledgers"]])
        assert doc["counts"] == K.counts(rows), path
        assert [c["comparison"] for c in doc["claims"]] == [r.status for r in rows], path
