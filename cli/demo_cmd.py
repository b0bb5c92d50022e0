"""(placeholder: filled in by the issue that owns these commands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds nothing yet."""
