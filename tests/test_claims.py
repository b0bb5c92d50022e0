"""The claims ledger (``biasvar.claims``, ``biasvar claims``): verdicts on toy runs with known truth,
the TOST and slope arithmetic by hand, the paper's ledger as package data, bad files as one line.

Known truth on ``toy-cat`` (3 variables x 4 categories, quadratic loss, exact reference): ZGR and
RF(4) are unbiased there (README: "ZGR is unbiased for a quadratic loss"), ST is biased;
``st-zgr(alpha=1)`` is ZGR and ``st-zgr(alpha=0,t=2)`` is ``st(t=2)`` by definition (equal
expectation and variance, independent draws); GS's variance falls with t.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import scipy.stats
from typer.testing import CliRunner

from biasvar import claims as C
from biasvar.report import analyze_runs
from biasvar.stats.contrast import Contrast
from biasvar.stats.intervals import Estimate

runner = CliRunner()
PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "zgr-cold-analysis.txt"
SPECS = ("zgr", "st", "st-zgr(alpha=1)", "st(t=2)", "st-zgr(alpha=0,t=2)", "rf(M=4)", "gs(t=0.2)", "gs(t=0.4)",
         "gs(t=1)")


def _sample(runs_dir: Path, specs, n: int) -> None:
    from biasvar.engine import sample_run
    from biasvar.problems.toy import ToyCat
    from biasvar.snapshot import snapshot_of

    snap = snapshot_of(ToyCat(vars=3, categories=4, loss="quadratic", seed=0), provenance={"test": "claims"})
    for spec in specs:
        sample_run(snap, spec, n=n, seed=0, runs_dir=runs_dir, device="cpu", keep=0)


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory, one_thread) -> Path:
    d = tmp_path_factory.mktemp("claims") / "runs"
    _sample(d, SPECS, 3000)
    return d


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, one_thread) -> Path:
    d = tmp_path_factory.mktemp("claims-tiny") / "runs"
    _sample(d, ("zgr", "st-zgr(alpha=1)"), 40)
    return d


def _c(**kw):
    return {"words": kw.pop("words", kw["id"]), **kw}


TRUE_CLAIMS = [
    _c(id="zgr-less-biased-than-st", kind="less", a="zgr", b="st"),
    _c(id="zgr-unbiased", kind="floor", run="zgr", margin={"rel": 0.2, "of": "st"}),
    _c(id="rf4-unbiased", kind="floor", run="rf(M=4)", margin={"rel": 0.2, "of": "st"}),
    _c(id="zgr-twin-same-variance", kind="equal", quantity="variance", a="st-zgr(alpha=1)", b="zgr",
       margin={"rel": 0.15}),
    _c(id="st2-twin-same-bias", kind="equal", a="st-zgr(alpha=0,t=2)", b="st(t=2)", margin={"rel": 0.25}),
    _c(id="gs-variance-falls", kind="monotone", quantity="variance", run="gs(t={t})", t=[0.2, 0.4, 1],
       direction="decreasing"),
    _c(id="gs-variance-slope", kind="slope", run="gs(t={t})", t=[0.2, 0.4], low=-2.0, high=-1.0),
    _c(id="st-variance-ten-times-bias", kind="ratio", run="st", at_least=10),
]
FALSE_CLAIMS = [
    _c(id="st-less-biased-than-zgr", kind="less", a="st", b="zgr"),
    _c(id="st-unbiased", kind="floor", run="st"),
    _c(id="st-variance-above-zgr", kind="greater", quantity="variance", a="st", b="zgr"),
    _c(id="st-zgr-same-variance", kind="equal", quantity="variance", a="st", b="zgr", margin={"rel": 0.1}),
    _c(id="gs-variance-rises", kind="monotone", quantity="variance", run="gs(t={t})", t=[0.2, 0.4, 1],
       direction="increasing"),
    _c(id="gs-variance-flat", kind="slope", run="gs(t={t})", t=[0.2, 0.4], low=-0.5, high=0.5),
    _c(id="st-variance-100-times-bias", kind="ratio", run="st", at_least=100),
]


def _ledger(runs: Path, entries, **kw) -> C.Ledger:
    claims = C.parse_claims({"claims": entries}, "test")
    tested = {str(s) for s in (C.fill(x, None) for x in SPECS)}
    p = C.plan(claims, tested, "exact", **kw)
    rep = analyze_runs(runs, reference="exact", n_resamples=1000, confidence_level=p.level, contrasts=p.pairs)
    return C.evaluate_report(claims, rep, **kw)


def test_true_claims_supported_false_ones_contradicted_missing_runs_named(toy_runs):
    entries = TRUE_CLAIMS + FALSE_CLAIMS + [_c(id="darn-below-zgr", kind="less", quantity="mse", a="darn", b="zgr")]
    led = _ledger(toy_runs, entries)
    verdicts = {r.claim.id: r.verdict for r in led.results}
    for e in TRUE_CLAIMS:
        assert verdicts[e["id"]] == C.SUPPORTED, (e["id"], led.result(e["id"]).reason)
    for e in FALSE_CLAIMS:
        assert verdicts[e["id"]] == C.CONTRADICTED, (e["id"], led.result(e["id"]).reason)
    miss = led.result("darn-below-zgr")
    assert miss.verdict == C.NOT_MEASURED and miss.missing == ("darn",) and "darn" in miss.reason
    # Bonferroni over every comparison of the measured claims (monotone: 2 pairs each, ratio: 2 intervals)
    assert led.n_comparisons == 1 + 1 + 1 + 1 + 1 + 2 + 1 + 2 + 1 + 1 + 1 + 1 + 2 + 1 + 2
    assert led.alpha_each == pytest.approx(0.05 / led.n_comparisons)
    check = led.result("zgr-less-biased-than-st").checks[0]
    assert check.level == pytest.approx(1 - 0.05 / led.n_comparisons) and check.method.startswith("paired contrast")
    assert "Bonferroni over the 19 comparisons" in C.family_statement(led)


def test_underpowered_true_claim_is_undecided(tiny_runs):
    """st-zgr(alpha=1) is ZGR: the same V, but 40 draws cannot show it within 15%."""
    entries = [TRUE_CLAIMS[3], _c(id="zgr-unbiased", kind="floor", run="zgr", margin={"abs": 1e-3})]
    claims = C.parse_claims({"claims": entries}, "test")
    p = C.plan(claims, {"zgr", "st-zgr(alpha=1)"}, "exact")
    rep = analyze_runs(tiny_runs, reference="exact", n_resamples=1000, confidence_level=p.level, contrasts=p.pairs)
    led = C.evaluate_report(claims, rep)
    assert [r.verdict for r in led.results] == [C.UNDECIDED, C.UNDECIDED], [r.reason for r in led.results]


def _row(spec, b2, v, *, lo=None, hi=None, cost=1.0, seed=0):
    return SimpleNamespace(spec=spec, seed=seed, cost=cost, b2=Estimate(b2, lo, hi), variance=Estimate(v, v, v, 0.0),
                           mse=Estimate(b2 + v))


def _contrast(a, b, value, se, df):
    return Contrast(a=a, a_seed=0, b=b, b_seed=0, reference="rf(M=4)", b2=Estimate(value, se=se),
                    variance=Estimate(0.0, se=1.0), b2_se_independent=None, df_b2=df, df_variance=10.0)


@pytest.mark.parametrize(("value", "margin", "expected"), [
    (0.1, 0.2, C.SUPPORTED),     # 90% interval [0.0138, 0.1862] inside (-0.2, 0.2); the 95% one is not
    (0.1, 0.15, C.UNDECIDED),    # 0.1862 > 0.15
    (0.5, 0.3, C.CONTRADICTED),  # [0.4138, 0.5862] entirely above 0.3
    (-0.5, 0.3, C.CONTRADICTED),
])
def test_tost_against_a_hand_computed_case(value, margin, expected):
    """equal with a margin: two one-sided tests at alpha = 0.05, i.e. the 90% interval
    ``value +- t_{0.95, 20} se`` with t_{0.95, 20} = 1.72472 (from a table), se = 0.05."""
    claims = C.parse_claims({"claims": [_c(id="eq", kind="equal", a="zgr", b="st", margin={"abs": margin})]})
    rows = [_row("zgr", 1.0, 1.0), _row("st", 1.0, 1.0)]
    led = C.evaluate(claims, rows, [_contrast("st", "zgr", -value, 0.05, 20.0)], alpha=0.05, correction="none")
    ch = led.results[0].checks[0]
    assert ch.level == pytest.approx(0.90)
    assert (ch.low, ch.high) == pytest.approx((value - 1.72472 * 0.05, value + 1.72472 * 0.05), abs=1e-5)
    assert led.results[0].verdict == expected


def test_directional_uses_the_two_sided_interval_and_bonferroni_widens_it():
    """less at alpha 0.05: 95% two-sided interval; value -0.1, se 0.05, df 20: t_{0.975,20} = 2.08596
    puts the upper end at 0.0043 > 0 (undecided), while a 90% interval would have said supported."""
    claims = C.parse_claims({"claims": [_c(id="lt", kind="less", a="zgr", b="st"),
                                        _c(id="gt", kind="greater", a="zgr", b="st")]})
    rows = [_row("zgr", 1.0, 1.0), _row("st", 1.0, 1.0)]
    cs = [_contrast("zgr", "st", -0.1, 0.05, 20.0)]
    led = C.evaluate(claims, rows, cs, alpha=0.05, correction="none")
    assert led.results[0].checks[0].high == pytest.approx(-0.1 + 2.08596 * 0.05, abs=1e-5)
    assert [r.verdict for r in led.results] == [C.UNDECIDED, C.UNDECIDED]
    led = C.evaluate(claims, rows, [_contrast("zgr", "st", -0.2, 0.05, 20.0)], alpha=0.05, correction="none")
    assert [r.verdict for r in led.results] == [C.SUPPORTED, C.CONTRADICTED]
    # Bonferroni over the 2 comparisons: each at 0.025, t_{0.9875, 20} = 2.42326
    led = C.evaluate(claims, rows, [_contrast("zgr", "st", -0.2, 0.05, 20.0)], alpha=0.05)
    assert led.alpha_each == pytest.approx(0.025)
    assert led.results[0].checks[0].high == pytest.approx(-0.2 + 2.42326 * 0.05, abs=1e-5)


def test_wls_slope_matches_weighted_polyfit_and_inflates_on_scatter():
    x, y, s = [0.0, 1.0, 2.0, 3.0], [0.1, -0.9, -2.1, -2.9], [0.1, 0.1, 0.2, 0.1]
    slope, se, df = C.wls_slope(x, y, s)
    import numpy as np

    w = 1 / np.square(s)
    ref = np.polyfit(x, y, 1, w=np.sqrt(w))[0]
    assert slope == pytest.approx(ref, rel=1e-10)
    sxx = np.sum(w * (np.asarray(x) - np.sum(w * np.asarray(x)) / np.sum(w)) ** 2)
    chi2 = np.sum(w * (np.asarray(y) - np.polyval(np.polyfit(x, y, 1, w=np.sqrt(w)), x)) ** 2)
    assert chi2 / 2 < 1 and df is None and se == pytest.approx(1 / math.sqrt(sxx))
    _, se2, df2 = C.wls_slope(x, [0.0, -1.5, -1.5, -3.0], s)  # scattered: se inflated, t with k - 2 df
    assert df2 == 2.0 and se2 > se


def test_ratio_uses_conservative_interval_ends():
    rows = [SimpleNamespace(spec="zgr", seed=0, cost=1.0, b2=Estimate(1.0, 0.5, 2.0),
                            variance=Estimate(150.0, 120.0, 180.0), mse=None)]
    for at_least, verdict in ((60, C.SUPPORTED), (100, C.UNDECIDED), (400, C.CONTRADICTED)):
        claims = C.parse_claims({"claims": [_c(id="r", kind="ratio", run="zgr", at_least=at_least)]})
        r = C.evaluate(claims, rows, (), correction="none").results[0]
        assert r.verdict == verdict and (r.checks[0].low, r.checks[0].high) == (60.0, 360.0)


def test_v_against_the_reference_run_uses_independent_rows():
    claims = C.parse_claims({"claims": [_c(id="v", kind="less", quantity="variance", a="rf(M=4)", b="zgr"),
                                        _c(id="b", kind="less", a="rf(M=4)", b="zgr")]})
    ref = SimpleNamespace(spec="rf(M=4)", seed=0, cost=4.0, b2=None, variance=Estimate(1.0, se=0.03), mse=None)
    zgr = SimpleNamespace(spec="zgr", seed=0, cost=1.0, b2=Estimate(0.1), variance=Estimate(1.2, se=0.04),
                          mse=None)
    led = C.evaluate(claims, [ref, zgr], (), correction="none", reference="rf(M=4)")
    ch = led.results[0].checks[0]
    q = scipy.stats.norm.ppf(0.975)
    assert (ch.low, ch.high) == pytest.approx((-0.2 - q * 0.05, -0.2 + q * 0.05))
    assert led.results[0].verdict == C.SUPPORTED and "independent" in ch.method
    assert led.results[1].verdict == C.NOT_MEASURED and "reference" in led.results[1].missing[0]


def test_b2_difference_without_a_paired_contrast_is_not_measured_and_left_out_of_the_family():
    """A saved report has marginal intervals only: they decide nothing about a b2 difference, however
    far apart (here disjoint), so the claim is not measured, and the family counts only the V claim."""
    claims = C.parse_claims({"claims": [_c(id="b", kind="less", a="zgr", b="st"),
                                        _c(id="v", kind="less", quantity="variance", a="st", b="zgr")]})
    rows = [SimpleNamespace(spec="zgr", seed=0, cost=1.0, b2=Estimate(0.1, 0.05, 0.15), variance=Estimate(2.0, se=0.1),
                            mse=None),
            SimpleNamespace(spec="st", seed=0, cost=1.0, b2=Estimate(5.0, 4.9, 5.1), variance=Estimate(1.0, se=0.1),
                            mse=None)]
    led = C.evaluate(claims, rows, ())
    assert led.results[0].verdict == C.NOT_MEASURED and led.results[0].missing == ("paired contrast zgr - st",)
    assert led.results[1].verdict == C.SUPPORTED and led.n_comparisons == 1 and led.alpha_each == 0.05


@pytest.mark.parametrize(("entry", "field"), [
    ({"id": "x", "kind": "lesser", "a": "zgr", "b": "st", "words": "w"}, "kind"),
    ({"id": "x", "kind": "less", "a": "zgr", "words": "w"}, "b"),
    ({"id": "x", "kind": "less", "a": "zgr", "b": "nope(t=1)", "words": "w"}, "b"),
    ({"id": "x", "kind": "equal", "a": "zgr", "b": "st", "words": "w"}, "margin"),
    ({"id": "x", "kind": "less", "a": "zgr", "b": "st", "words": "w", "margn": {"abs": 1}}, "margn"),
    ({"id": "x", "kind": "monotone", "run": "gs(t={t})", "t": [0.1], "direction": "increasing", "words": "w"}, "t"),
    ({"id": "x", "kind": "floor", "run": "gs(t={t})", "words": "w"}, "run"),
    ({"id": "x", "kind": "ratio", "run": "st", "at_least": "big", "words": "w"}, "at_least"),
    ({"id": "x", "kind": "less", "quantity": "bias", "a": "zgr", "b": "st", "words": "w"}, "quantity"),
])
def test_bad_entries_name_the_entry_and_field(entry, field):
    good = {"id": "ok", "kind": "less", "a": "zgr", "b": "st", "words": "w"}
    with pytest.raises(C.ClaimsError) as e:
        C.parse_claims({"claims": [good, entry]}, "mine.json")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("claims file mine.json: entry 2 (id 'x')") and f"field '{field}'" in msg


def test_paper_ledger_is_package_data_with_exact_quotes():
    path = C.paper_path()
    assert path.is_file() and path.name == "paper.json"
    claims = C.load_claims()
    assert len(claims) >= 20 and len({c.id for c in claims}) == len(claims)
    assert {c.kind for c in claims} >= {"less", "greater", "equal", "monotone", "slope", "ratio"}
    if PAPER.is_file():
        text = PAPER.read_text(encoding="utf-8")
        for c in claims:
            assert c.words in text, c.id
    # on runs of the fig1 preset, st(t=2) (fig4 only) is missing: named, never dropped
    from biasvar.presets import get_preset

    fig1 = get_preset("fig1")
    p = C.plan(claims, set(fig1.specs), fig1.reference)
    assert p.missing["st2-matches-gsst1-bias"] == ("st(t=2)",)
    assert not p.missing["gsst-grmc100-same-bias"] and p.n_comparisons > 100


def test_the_example_in_docs_parses():
    docs = Path(__file__).resolve().parents[1] / "docs" / "claims.md"
    block = docs.read_text().split("```json\n", 1)[1].split("```", 1)[0]
    claims = C.parse_claims(json.loads(block), "docs")
    assert [c.kind for c in claims] == ["less", "equal", "slope", "floor"]


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_cli_writes_claims_json_and_md(toy_runs, tmp_path):
    from biasvar_cli.main import app

    mine = _write(tmp_path / "mine.json", {"claims": [TRUE_CLAIMS[0], FALSE_CLAIMS[0],
                                                      _c(id="st2-below-gsst1", kind="less", a="st(t=2)",
                                                         b="gs-st(t=1)")]})
    out = tmp_path / "ledger"
    r = runner.invoke(app, ["claims", "--runs-dir", str(toy_runs), "--reference", "exact", "--claims", str(mine),
                            "--out", str(out), "--n-resamples", "200"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "claims.json").read_text())
    assert [c["verdict"] for c in data["claims"]] == [C.SUPPORTED, C.CONTRADICTED, C.NOT_MEASURED]
    assert data["claims"][2]["missing"] == ["gs-st(t=1)"] and data["n_comparisons"] == 2
    assert data["claims"][0]["checks"][0]["low"] < data["claims"][0]["checks"][0]["high"] < 0
    md = (out / "claims.md").read_text()
    assert "Bonferroni over the 2 comparisons" in md and "| zgr-less-biased-than-st |" in md
    r = runner.invoke(app, ["claims", "--runs-dir", str(toy_runs), "--reference", "exact", "--claims", str(mine),
                            "--n-resamples", "200"], terminal_width=80)
    assert r.exit_code == 0 and "3 claims: 1 supported, 1 contradicted" in r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80


def test_cli_paper_ledger_on_a_fig1_sweep(tmp_path):
    """The default ledger on (synthetic) runs of the fig1 preset: every claim gets a verdict; the two on
    st(t=2), which only fig4 samples, are not measured and name it."""
    from biasvar_cli.main import app
    from conftest import fig_runs, write_run

    from biasvar.presets import get_preset

    fig1 = get_preset("fig1")
    for run in fig_runs([fig1.reference, *fig1.specs], nb=6, bs=8):
        write_run(tmp_path / "runs", run)
    r = runner.invoke(app, ["claims", "--runs-dir", str(tmp_path / "runs"), "--format", "json", "--n-resamples", "100"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data["claims"]) == len(C.load_claims()) and sum(data["counts"].values()) == len(data["claims"])
    missing = {c["id"]: c["missing"] for c in data["claims"] if c["verdict"] == C.NOT_MEASURED}
    assert missing == {"st2-matches-gsst1-bias": ["st(t=2)"], "st2-matches-gsst1-variance": ["st(t=2)"]}
    assert data["correction"] == "bonferroni" and data["alpha_each"] == pytest.approx(0.05 / data["n_comparisons"])


def test_cli_bad_claims_file_is_one_line_exit_1(tmp_path):
    from biasvar_cli.main import app

    bad = _write(tmp_path / "bad.json", {"claims": [{"id": "mine", "kind": "less", "a": "zgr", "words": "w"}]})
    r = runner.invoke(app, ["claims", "--claims", str(bad), "--runs-dir", str(tmp_path)])
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and "entry 1 (id 'mine'), field 'b'" in lines[0], r.output
    broken = _write(tmp_path / "broken.json", "{\"claims\": [")
    r = runner.invoke(app, ["claims", "--claims", str(broken)])
    assert r.exit_code == 1 and "not valid JSON" in r.output and "Traceback" not in r.output
    proc = subprocess.run([sys.executable, "-m", "biasvar_cli.main", "claims", "--claims", str(bad), "--runs-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "field 'b'" in proc.stderr
