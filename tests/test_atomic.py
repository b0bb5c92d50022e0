"""``biasvar.atomic``: the one atomic-write helper (reports, sweeps' manifests, bench results,
snapshots, downloaded datasets)."""

from __future__ import annotations

import os

import pytest

from biasvar.atomic import atomic_path, write_atomic


def test_write_atomic_replaces_the_file(tmp_path):
    p = tmp_path / "sub" / "r.json"
    write_atomic(p, "one")
    write_atomic(p, "two\r\n")
    assert p.read_bytes() == b"two\r\n"  # newlines as given
    write_atomic(p, b"\x00bytes")
    assert p.read_bytes() == b"\x00bytes"
    assert [q.name for q in p.parent.iterdir()] == ["r.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "model.pt"
    write_atomic(p, "old")
    with pytest.raises(RuntimeError), atomic_path(p, suffix=".part") as tmp:
        tmp.write_text("half")
        assert tmp.parent == p.parent and tmp.name.endswith(".part")
        raise RuntimeError("killed")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["model.pt"]


def test_every_writer_goes_through_it():
    """No module of biasvar but biasvar.atomic makes temporary files itself (``mkstemp`` gives them
    mode 0600, unreadable by a group that shares a results folder): every module is searched, so
    a new one cannot be missed. The modules known to write whole files import biasvar.atomic."""
    from pathlib import Path

    import biasvar

    root = Path(biasvar.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 40 and root / "store" / "writer.py" in modules
    own = [str(m.relative_to(root)) for m in modules if m.name != "atomic.py"
           and any(word in m.read_text() for word in ("mkstemp", "NamedTemporaryFile", "mktemp("))]
    assert own == []
    for name in ("studies/bench.py", "data/download.py", "snapshot.py", "studies/reproduce.py", "engine/sweeps.py",
                 "store/writer.py", "store/maintenance.py"):
        assert "biasvar.atomic import" in (root / name).read_text(), name
