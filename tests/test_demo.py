"""`biasvar demo`, the README's main command, end to end (as CI runs it on a fresh machine)."""

import json

from biasvar_cli.main import app
from typer.testing import CliRunner

from biasvar import formats as F
from biasvar import report as R


def test_demo_end_to_end(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out-dir", str(tmp_path), "--n", "4000"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("demo-toy-cat-pareto", "demo-quant-unit-pareto", "demo-quant-unit"):
        png = tmp_path / "figures" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
        assert png.with_suffix(".pdf").exists()
    assert "toy-cat" in result.output and "quant-unit" in result.output and "zgr" in result.output
    # ZGR is unbiased on the toy-cat problem (quadratic loss, Thm. 2): its 95% interval of b2 holds 0,
    # while ST's and DARN's do not (they are biased for quadratic losses).
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2
    reports = [R.analyze_runs(tmp_path / "runs", snapshot=f, reference="exact", n_resamples=300)
               for f in folders]
    toy = next(r for r in reports if r.rows[0].dim == 12)
    rows = {r.spec: r for r in toy.rows}
    assert rows["zgr"].b2.low <= 0 <= rows["zgr"].b2.high
    assert rows["st"].b2.low > 0 and rows["darn"].b2.low > 0
    assert len(rows) == 20
    json.loads(F.report_to_json(toy))
