"""The fixed cost of a small run (issue 26 item 6): ``biasvar sample`` imports neither scipy's
statistics, matplotlib nor Ray (``biasvar.stats`` loads its submodules on first use), and the
package's names keep working however they are imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("scipy.stats", "matplotlib", "ray")


def test_a_small_sample_imports_no_statistics_plots_or_ray(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from biasvar_cli.main import app
        res = CliRunner().invoke(app, ["sample", "--problem", "toy-cat", "--estimator", "zgr", "--n", "20",
                                       "--runs-dir", {str(tmp_path)!r}, "--device", "cpu"])
        assert res.exit_code == 0, res.output
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_package_names_are_the_functions_whatever_was_imported_first():
    code = textwrap.dedent("""
        import types
        import biasvar.stats.moments
        import biasvar.stats.compare
        import biasvar.stats.contrast
        import biasvar.stats as st
        from biasvar.stats import compare, contrast, moments, intervals, gram, Bootstrap, describe_run
        assert all(isinstance(f, types.FunctionType) for f in (compare, contrast, moments, describe_run))
        assert st.compare is compare and st.moments is moments and st.contrast is contrast
        assert isinstance(intervals, types.ModuleType) and isinstance(gram, types.ModuleType)
        assert Bootstrap is intervals.Bootstrap
        assert set(st.__all__) <= set(dir(st))
        from biasvar.stats.compare import Comparison
        from biasvar.stats import Comparison as C2
        assert Comparison is C2
        try:
            st.no_such_name
        except AttributeError:
            print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
