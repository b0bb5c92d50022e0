"""The ``front`` claim (the paper's Pareto-frontier statement of Fig. 4): every run outside the named
families is dominated in (b2, V), decided by paired contrasts; hand-built rows and contrasts with
known answers, the Bonferroni split inside the claim's slot, members that keep a non-dominated run
undecided, the parser's one-line errors, and the CLI on real toy runs."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
import scipy.stats
from biasvar_cli.main import app
from typer.testing import CliRunner

from biasvar import claims as C
from biasvar.stats.contrast import Contrast
from biasvar.stats.intervals import Estimate

FRONT = {"id": "front", "kind": "front", "families": ["st", "st-zgr", "zgr"], "words": "the frontier"}
# (b2, V) of each run; rf(M=4) is the reference (unbiased, V only), rf(M=2) a tested unbiased run
POINTS = {"zgr": (1.0, 2.0), "st": (5.0, 1.0), "gs-st(t=0.5)": (2.0, 3.0), "gr-mc(M=10,t=0.5)": (0.5, 1.5),
          "rf(M=2)": (0.0, 20.0)}
REF_V = 10.0
SE = 0.01  # every b2 and V difference is decided far from 0


def _rows(points=POINTS, se=SE):
    rows = [SimpleNamespace(spec="rf(M=4)", seed=0, cost=4.0, b2=None, variance=Estimate(REF_V, se=se), mse=None)]
    for s, (b2, v) in points.items():
        rows.append(SimpleNamespace(spec=s, seed=1, cost=1.0, b2=Estimate(b2, b2 - 2 * se, b2 + 2 * se, se),
                                    variance=Estimate(v, se=se), mse=None))
    return rows


def _contrasts(points=POINTS, se=SE, df=50.0):
    out = []
    for a, b in itertools.combinations(points, 2):
        (ba, va), (bb, vb) = points[a], points[b]
        out.append(Contrast(a=a, a_seed=1, b=b, b_seed=1, reference="rf(M=4)", b2=Estimate(ba - bb, se=se),
                            variance=Estimate(va - vb, se=se), b2_se_independent=None, df_b2=df, df_variance=df))
    return out


def _evaluate(entry, points=POINTS, se=SE, **kw):
    claims = C.parse_claims({"claims": [entry]}, "test")
    return C.evaluate(claims, _rows(points, se), _contrasts(points, se), reference="rf(M=4)", **kw)


def _by_run(result):
    out = {}
    for ch in result.checks:
        run = ch.label.split(": ", 1)[1].split(" ", 1)[0]
        out[run] = ch
    return out


def test_dominated_runs_support_and_a_run_on_the_front_contradicts():
    r = _evaluate(FRONT).results[0]
    checks = _by_run(r)
    # outside the families: gs-st (dominated by zgr and gr-mc), gr-mc (on the front: lowest b2 of the biased runs with a
    # V below zgr's and rf's), rf(M=2) (dominated by rf(M=4): b2 0 = 0, V 20 > 10); rf(M=4) is the lowest-V unbiased
    assert set(checks) == {"gs-st(t=0.5)", "gr-mc(M=10,t=0.5)", "rf(M=2)"}
    assert checks["gs-st(t=0.5)"].outcome == C.SUPPORTED and "dominated by" in checks["gs-st(t=0.5)"].label
    assert checks["rf(M=2)"].outcome == C.SUPPORTED and "dominated by rf(M=4)" in checks["rf(M=2)"].label
    assert checks["gr-mc(M=10,t=0.5)"].outcome == C.CONTRADICTED
    assert r.verdict == C.CONTRADICTED


def test_without_the_run_on_the_front_the_claim_is_supported():
    points = {k: v for k, v in POINTS.items() if not k.startswith("gr-mc")}
    assert _evaluate(FRONT, points).results[0].verdict == C.SUPPORTED


def test_moving_one_point_changes_the_verdict():
    """gs-st moved below zgr in V (still above it in b2): now nothing dominates it (st has a lower V but a
    higher b2, gr-mc a lower b2 and V... so gr-mc does): a wrong dominance rule flips one of these."""
    moved = {**POINTS, "gs-st(t=0.5)": (2.0, 1.6)}  # gr-mc (0.5, 1.5) still dominates it
    assert _by_run(_evaluate(FRONT, moved).results[0])["gs-st(t=0.5)"].outcome == C.SUPPORTED
    alone = {**moved, "gs-st(t=0.5)": (2.0, 1.2)}  # V below gr-mc's and zgr's, b2 below st's: on the front
    assert _by_run(_evaluate(FRONT, alone).results[0])["gs-st(t=0.5)"].outcome == C.CONTRADICTED


def test_an_unmeasured_member_keeps_a_run_on_the_front_undecided():
    entry = {**FRONT, "members": ["zgr", "st", "st-zgr(alpha=0.5)"]}
    r = _evaluate(entry).results[0]
    ch = _by_run(r)["gr-mc(M=10,t=0.5)"]
    assert ch.outcome == C.UNDECIDED and "st-zgr(alpha=0.5)" in ch.bound and r.verdict == C.UNDECIDED
    # every member measured: the contradiction stands
    entry = {**FRONT, "members": ["zgr", "st"]}
    assert _evaluate(entry).results[0].verdict == C.CONTRADICTED


def test_noisy_differences_leave_it_undecided():
    r = _evaluate(FRONT, se=0.6).results[0]  # gs-st - gr-mc: 1.5 in b2 and V, se 0.6 at the split level: +-1.9
    assert _by_run(r)["gs-st(t=0.5)"].outcome == C.UNDECIDED


def test_the_claim_is_one_slot_of_the_family_split_inside():
    other = {"id": "v", "kind": "less", "quantity": "variance", "a": "st", "b": "zgr", "words": "w"}
    claims = C.parse_claims({"claims": [FRONT, other]}, "test")
    led = C.evaluate(claims, _rows(), _contrasts(), reference="rf(M=4)")
    assert led.n_comparisons == 2 and led.alpha_each == pytest.approx(0.025)
    runs, outside = 6, 3  # rf(M=4), rf(M=2), zgr, st, gs-st, gr-mc; three outside the families
    level = 1 - 0.025 / (2 * outside * (runs - 1))
    ch = _by_run(led.result("front"))["gs-st(t=0.5)"]
    assert ch.level == pytest.approx(level)
    q = scipy.stats.t.ppf(0.5 + level / 2, 50.0)
    assert "gr-mc" in ch.label and (ch.low, ch.high) == pytest.approx((1.5 - q * SE, 1.5 + q * SE))
    # without the unbiased allowance rf(M=4) is outside the families and nothing dominates it (b2 = 0)
    r = _evaluate({**FRONT, "unbiased": False}).results[0]
    assert _by_run(r)["rf(M=4)"].outcome == C.CONTRADICTED


def test_without_paired_contrasts_b2_differences_decide_nothing():
    claims = C.parse_claims({"claims": [FRONT]}, "test")
    r = C.evaluate(claims, _rows(), (), reference="rf(M=4)").results[0]
    checks = _by_run(r)
    assert checks["gs-st(t=0.5)"].outcome == C.UNDECIDED
    assert checks["rf(M=2)"].outcome == C.SUPPORTED  # unbiased against unbiased: V alone decides


@pytest.mark.parametrize(("change", "field"), [
    ({"families": []}, "families"),
    ({"families": ["st(t=2)"]}, "families"),
    ({"families": ["nope"]}, "families"),
    ({"unbiased": "yes"}, "unbiased"),
    ({"members": ["gs(t=1)"]}, "members"),
    ({"members": ["st(t=oops)"]}, "members"),
    ({"t": [1.0]}, "t"),
])
def test_bad_front_entries_are_one_line(change, field):
    with pytest.raises(C.ClaimsError) as e:
        C.parse_claims({"claims": [{**FRONT, **change}]}, "mine.json")
    assert "\n" not in str(e.value) and f"field '{field}'" in str(e.value)


def test_the_paper_ledger_has_the_frontier_claim_with_the_fig4_grid():
    from biasvar.presets import protocol_specs

    c = {x.id: x for x in C.load_claims()}["pareto-front-families"]
    assert c.kind == "front" and c.families == ("st", "st-zgr", "zgr") and c.unbiased
    fig4 = [s for s in protocol_specs("fig4", None) if s.split("(")[0] in c.families]
    assert list(c.members) == fig4 and len(fig4) == 21


def test_cli_front_claim_on_toy_runs(tmp_path, one_thread):
    """Real runs (toy-cat, exact reference): the dominance checks come from real paired contrasts."""
    from biasvar.engine import sample_run
    from biasvar.problems.toy import ToyCat
    from biasvar.snapshot import snapshot_of

    snap = snapshot_of(ToyCat(vars=3, categories=4, loss="quadratic", seed=0), provenance={"test": "front"})
    runs = tmp_path / "runs"
    for spec in ("zgr", "st", "gs-st(t=0.5)", "rf(M=4)"):
        sample_run(snap, spec, n=2000, seed=0, runs_dir=runs, device="cpu", keep=0)
    path = tmp_path / "front.json"
    path.write_text(json.dumps({"claims": [FRONT]}))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["claims", "--runs-dir", str(runs), "--reference", "exact", "--claims", str(path),
                                 "--out", str(out), "--n-resamples", "200"], terminal_width=120)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "claims.json").read_text())
    entry = next(x for x in res["claims"] if x["id"] == "front") if "claims" in res else res["results"][0]
    labels = [ch["label"] for ch in entry["checks"]]
    assert any(lab.startswith("front: gs-st(t=0.5)") for lab in labels)
    assert entry["test"].startswith("front: every run not of st, st-zgr, zgr")
