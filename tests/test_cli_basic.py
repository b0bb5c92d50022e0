"""The CLI entry point, the estimators table, and the promise that README and CI run the same tests."""

import re
from pathlib import Path

from biasvar_cli.main import app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "estimators" in result.output


def test_estimators_table_lists_every_family():
    result = runner.invoke(app, ["estimators"], terminal_width=200)
    assert result.exit_code == 0
    for example in ("zgr", "darn", "st(t=0.5)", "gs-st(t=0.5)", "gr-mc(t=0.5,M=10)", "rf(M=10)", "Eq. 17"):
        assert example in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "biasvar" in result.output


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"## Quick start\n+```bash\n(.*?)```", readme, re.S)
    assert block, "README has a Quick start code block"
    test_cmd = [line.split("#")[0].strip() for line in block.group(1).splitlines() if "pytest" in line]
    assert test_cmd, "README's quick start names the test command"
    ci_cmds = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert test_cmd[0] in ci_cmds
