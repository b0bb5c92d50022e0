"""Dataset layer: readers (real files from ../shared/data when present, tiny synthetic files in the same
formats otherwise), checksums, the Omniglot orientation, downloads (faked: tests never touch the network),
and ``biasvar data verify``."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import scipy.io
import torch
from biasvar_cli.main import app
from typer.testing import CliRunner

from biasvar import data
from biasvar.data import catalog, download
from biasvar.errors import DataError

runner = CliRunner()

N_ROWS = {"train": 7, "valid": 3, "test": 5}


@pytest.fixture(autouse=True)
def _never_download(monkeypatch):
    """Any download a test did not fake explicitly fails the test."""
    def forbidden(url, dest, **kw):
        raise AssertionError(f"a test tried to download {url}")
    monkeypatch.setattr(download, "_fetch", forbidden)
    monkeypatch.delenv("BIASVAR_OFFLINE", raising=False)


# ---------------------------------------------------------------------------------------------
# Writers of the real formats (independent of the readers under test)
# ---------------------------------------------------------------------------------------------
def write_idx_images(path: Path, imgs: np.ndarray) -> None:
    """IDX3: magic 0x00000803, then n, rows, cols as big-endian uint32, then uint8 pixels; gzip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = imgs.shape[0]
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, n, 28, 28) + imgs.astype(np.uint8).tobytes()))


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">II", 0x801, len(labels))
    path.write_bytes(gzip.compress(header + labels.astype(np.uint8).tobytes()))


def write_ascii_amat(path: Path, x: np.ndarray, *, eol: str = "\n", trailing: str = "") -> None:
    """Larochelle's text format: one image per line, 784 space-separated 0/1 values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(str(int(v)) for v in row) + trailing + eol for row in x), newline="")


def write_matlab_amat(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x.astype(np.uint8)}, appendmat=False)


def matlab_columns(imgs: np.ndarray) -> np.ndarray:
    """What MATLAB's ``reshape(I, 784, [])`` makes of a 28 x 28 x N stack: [784, N], column-major."""
    stack = imgs.transpose(1, 2, 0)                     # [row, col, n], as MATLAB indexes I(row, col, n)
    return np.reshape(stack, (784, imgs.shape[0]), order="F")


def write_chardata(path: Path, train: np.ndarray, test: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"data": matlab_columns(train), "testdata": matlab_columns(test)}, appendmat=False)


def file_hash(path: Path, algo: str) -> str:
    return hashlib.new(algo, path.read_bytes()).hexdigest()


def trust(monkeypatch, root: Path, *, keep_amat_checksums: bool = False) -> None:
    """Point the checksum table at the synthetic files under ``root`` (sizes and rows too)."""
    table = {}
    for key, spec in catalog.FILES.items():
        path = root / spec.relpath
        if path.is_file():
            algo = spec.checksums[0][0]
            keep = spec.fmt == "amat" and keep_amat_checksums
            sums = spec.checksums if keep else ((algo, file_hash(path, algo)),)
            rows = N_ROWS.get(spec.split) if spec.fmt == "amat" else spec.rows
            spec = replace(spec, checksums=sums, size=path.stat().st_size, rows=rows)
        table[key] = spec
    monkeypatch.setattr(catalog, "FILES", MappingProxyType(table))


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """A complete tiny data dir in the real layout, trusted by the checksum table; returns (root, arrays)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    arrays = {}
    for coll, folder in (("mnist", "mnist"), ("fashion-mnist", "fashion-mnist")):
        for split, stem in (("train", "train"), ("test", "t10k")):
            imgs = rng.integers(0, 256, (N_ROWS[split], 28, 28), dtype=np.uint8)
            imgs[0, 0, :4] = [0, 127, 128, 255]                  # the threshold's edge cases
            labels = rng.integers(0, 10, N_ROWS[split], dtype=np.uint8)
            write_idx_images(root / folder / f"{stem}-images-idx3-ubyte.gz", imgs)
            write_idx_labels(root / folder / f"{stem}-labels-idx1-ubyte.gz", labels)
            arrays[coll, split] = (imgs, labels)
    for split in ("train", "valid", "test"):
        x = rng.integers(0, 2, (N_ROWS[split], 784), dtype=np.uint8)
        write_matlab_amat(root / "binarized_mnist" / f"binarized_mnist_{split}.amat", x)
        arrays["binarized-mnist", split] = x
    omni = {s: rng.random((N_ROWS[s], 28, 28)) for s in ("train", "test")}
    write_chardata(root / "omniglot" / "chardata.mat", omni["train"], omni["test"])
    arrays["omniglot", "train"], arrays["omniglot", "test"] = omni["train"], omni["test"]
    trust(monkeypatch, root)
    return root, arrays


# ---------------------------------------------------------------------------------------------
# Real files from ../shared/data
# ---------------------------------------------------------------------------------------------
MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_mnist_shapes_labels_and_pixel_mean(shared_data):
    ds = data.load("mnist", "train", data_dir=shared_data, download=False)
    assert ds.images.shape == (60000, 784) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (60000,)
    assert torch.bincount(ds.labels).tolist() == MNIST_TRAIN_CLASS_COUNTS
    assert ds.images.mean().item() == pytest.approx(0.1307, abs=2e-4)   # the usual normalization constant
    assert 0 <= ds.images.min() and ds.images.max() == 1
    assert not ds.dynamic and ds.files[0].endswith("train-images-idx3-ubyte.gz")
    # MNIST-B: the same images thresholded at 0.5, static.
    b = data.load("mnist-b", "train", data_dir=shared_data, download=False)
    assert torch.equal(b.images, (ds.images > 0.5).float()) and torch.equal(b.labels, ds.labels)
    test = data.load("mnist-b", "test", data_dir=shared_data, download=False)
    assert test.images.shape == (10000, 784) and test.labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_real_binarized_mnist_matlab_copies(shared_data):
    for split, n in (("train", 50000), ("valid", 10000), ("test", 10000)):
        ds = data.load("binarized-mnist", split, data_dir=shared_data, download=False)
        assert ds.images.shape == (n, 784) and ds.labels is None and not ds.dynamic
        assert ((ds.images == 0) | (ds.images == 1)).all()
        assert 0.12 < ds.images.mean().item() < 0.14


def test_real_verify_and_missing_file_message(shared_data):
    rows = data.verify(shared_data)
    assert len(rows) == len(catalog.FILES)
    by = {(r.dataset, r.split, r.role): r for r in rows}
    assert by["mnist", "train", "images"].state == "present"
    assert by["binarized-mnist", "valid", "images"].state == "present"
    for r in rows:
        assert r.state in ("present", "missing")          # nothing in ../shared/data is corrupt
        assert str(r.path).startswith(str(shared_data))
    missing = [r for r in rows if r.state == "missing"]
    if missing:                                           # e.g. Fashion-MNIST images, Omniglot
        name, split = missing[0].used_by[0], missing[0].split.split("+")[0]
        with pytest.raises(DataError, match="is missing: put it at") as e:
            data.load(name, split, data_dir=shared_data, download=False)
        assert str(shared_data) in str(e.value) and "http" in str(e.value)


def copy_mnist_test(shared_data: Path | None, root: Path, monkeypatch) -> str:
    """MNIST test files under ``root``: real copies (expected MD5 = the public one) or synthetic ones."""
    if shared_data is not None:
        for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (root / "mnist").mkdir(parents=True, exist_ok=True)
            shutil.copy(shared_data / "mnist" / name, root / "mnist" / name)
        return "ec29112dd5afa0611ce80d1b7f02629c"
    write_idx_images(root / "mnist/t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    write_idx_labels(root / "mnist/t10k-labels-idx1-ubyte.gz", np.arange(5))
    trust(monkeypatch, root)
    return catalog.FILES["mnist/test-labels"].checksums[0][1]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_file_names_file_and_expected_checksum(tmp_path, monkeypatch, damage):
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    root = tmp_path / "d"
    expected = copy_mnist_test(shared if shared.is_dir() else None, root, monkeypatch)
    assert data.load("mnist", "test", data_dir=root, download=False).labels is not None   # intact first
    path = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) - 100]
    tmp = path.with_suffix(".new")
    tmp.write_bytes(bytes(raw))
    tmp.replace(path)                         # a new file: the verification cache must not hide it
    with pytest.raises(DataError) as e:
        data.load("mnist-b", "test", data_dir=root, download=False)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and f"expected MD5 {expected}" in msg and "corrupt" in msg
    if damage == "truncate":
        assert "truncated" in msg
    assert [r.state for r in data.verify(root) if r.path == path] == ["corrupt"]


# ---------------------------------------------------------------------------------------------
# Synthetic files
# ---------------------------------------------------------------------------------------------
def test_synthetic_idx_variants(synthetic):
    root, arrays = synthetic
    for name, coll in (("mnist", "mnist"), ("fmnist", "fashion-mnist")):
        for split in ("train", "test"):
            imgs, labels = arrays[coll, split]
            ds = data.load(name, split, data_dir=root, download=False)
            grey = torch.from_numpy(imgs.reshape(-1, 784).astype(np.float64) / 255)
            torch.testing.assert_close(ds.images.double(), grey, atol=1e-7, rtol=0)
            assert ds.labels.tolist() == labels.tolist() and ds.labels.dtype == torch.int64
            assert len(ds) == N_ROWS[split] and not ds.dynamic
    imgs, _ = arrays["mnist", "train"]
    b = data.load("mnist-b", "train", data_dir=root, download=False)
    assert torch.equal(b.images, torch.from_numpy((imgs.reshape(-1, 784) / 255.0 > 0.5).astype(np.float32)))
    assert b.images[0, :4].tolist() == [0.0, 0.0, 1.0, 1.0]          # 0, 127, 128, 255


def test_omniglot_orientation_and_dynamic_flag(tmp_path, monkeypatch):
    """An image with a known, asymmetric shape comes out upright (not transposed or flipped)."""
    glyph = np.zeros((28, 28))
    glyph[2, 3:20] = 1.0            # a bar across the top
    glyph[2:25, 3] = 0.5            # a bar down the left side
    glyph[0, 27] = 0.25             # one pixel in the top-right corner
    assert not np.array_equal(glyph, glyph.T)
    train = np.stack([glyph, np.fliplr(glyph), np.zeros((28, 28))])
    test = np.stack([np.flipud(glyph)])
    root = tmp_path / "d"
    write_chardata(root / "omniglot" / "chardata.mat", train, test)
    trust(monkeypatch, root)
    ds = data.load("omniglot-d", "train", data_dir=root, download=False)
    assert ds.dynamic and ds.labels is None and ds.images.dtype == torch.float32
    img = ds.images[0].reshape(28, 28)
    assert img[0, 27] == 0.25 and img[2, 10] == 1.0 and img[20, 3] == 0.5 and img[27, 0] == 0
    np.testing.assert_array_equal(ds.images.reshape(-1, 28, 28).numpy(), train.astype(np.float32))
    te = data.load("omniglot-d", "test", data_dir=root, download=False)
    np.testing.assert_array_equal(te.images.reshape(-1, 28, 28).numpy(), test.astype(np.float32))
    # Slow twin: the IWAE loader's own formula (yburda/iwae, reused by VampPrior and others).
    raw = scipy.io.loadmat(root / "omniglot" / "chardata.mat")["data"]
    iwae = raw.T.reshape((-1, 28, 28)).reshape((-1, 28 * 28), order="F")
    np.testing.assert_array_equal(ds.images.numpy(), iwae.astype(np.float32))


def test_binarized_mnist_ascii_and_matlab_forms_agree(tmp_path, monkeypatch):
    x = np.random.default_rng(1).integers(0, 2, (N_ROWS["test"], 784), dtype=np.uint8)
    a, m, crlf = tmp_path / "ascii", tmp_path / "mat", tmp_path / "crlf"
    write_ascii_amat(a / "binarized_mnist" / "binarized_mnist_test.amat", x)
    write_ascii_amat(crlf / "binarized_mnist_test.amat", x, eol="\r\n", trailing=" ")    # flat, CRLF
    write_matlab_amat(m / "binarized_mnist" / "binarized_mnist_test.amat", x)
    trust(monkeypatch, m, keep_amat_checksums=True)       # rows only: the ASCII files are not in the table
    monkeypatch.setattr(catalog, "FILES", MappingProxyType({
        **catalog.FILES, "binarized-mnist/test": replace(catalog.FILES["binarized-mnist/test"], checksums=(
            ("sha256", file_hash(m / "binarized_mnist" / "binarized_mnist_test.amat", "sha256")),))}))
    loaded = [data.load("binarized-mnist", "test", data_dir=d, download=False) for d in (a, m, crlf)]
    for ds in loaded:
        assert torch.equal(ds.images, torch.from_numpy(x.astype(np.float32))) and ds.labels is None
    assert "no published checksum" in [r for r in data.verify(a) if r.split == "test" and
                                       r.dataset == "binarized-mnist"][0].detail


@pytest.mark.parametrize("defect, match", [
    ("value 2", "other than 0 or 1"),
    ("token 00", "image 1 holds a value other than 0 or 1"),     # 784 digits, but 783 tokens
    ("short row", "has 783 values, expected 784"),
    ("extra row", "has 6 images, expected 5"),
])
def test_malformed_ascii_amat(tmp_path, monkeypatch, defect, match):
    x = np.zeros((N_ROWS["test"], 784), dtype=np.uint8)
    path = tmp_path / "binarized_mnist" / "binarized_mnist_test.amat"
    write_ascii_amat(path, x if defect != "extra row" else np.zeros((6, 784), np.uint8))
    if defect == "value 2":
        path.write_text(path.read_text().replace("0", "2", 1000)[:2000] + path.read_text()[2000:])
    elif defect == "token 00":
        path.write_text(path.read_text().replace("0 ", "0", 1))
    elif defect == "short row":
        lines = path.read_text().splitlines()
        lines[3] = lines[3][:-2]
        path.write_text("\n".join(lines) + "\n")
    trust(monkeypatch, tmp_path, keep_amat_checksums=True)
    with pytest.raises(DataError, match=match) as e:
        data.load("binarized-mnist", "test", data_dir=tmp_path, download=False)
    assert "binarized_mnist_test.amat" in str(e.value)


def test_matlab_amat_with_unknown_checksum_is_corrupt(synthetic):
    root, _ = synthetic
    path = root / "binarized_mnist" / "binarized_mnist_valid.amat"
    expected = catalog.FILES["binarized-mnist/valid"].checksums[0][1]
    write_matlab_amat(path, np.ones((N_ROWS["valid"], 784), np.uint8))      # a different MATLAB file
    with pytest.raises(DataError, match=f"binarized_mnist_valid.amat.*expected SHA256 {expected}"):
        data.load("binarized-mnist", "valid", data_dir=root, download=False)


def test_flat_layout_and_shared_names(synthetic, tmp_path):
    """Files placed flat are found; MNIST and Fashion-MNIST share names, so the checksum decides."""
    root, arrays = synthetic
    flat = tmp_path / "flat"
    flat.mkdir()
    for rel in ("fashion-mnist/t10k-images-idx3-ubyte.gz", "fashion-mnist/t10k-labels-idx1-ubyte.gz",
                "omniglot/chardata.mat"):
        shutil.copy(root / rel, flat / Path(rel).name)
    ds = data.load("fmnist", "test", data_dir=flat, download=False)
    assert ds.labels.tolist() == arrays["fashion-mnist", "test"][1].tolist()
    omni = data.load("omniglot-d", "test", data_dir=flat, download=False)
    assert omni.images.shape == (N_ROWS["test"], 784)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is missing"):
        data.load("mnist", "test", data_dir=flat, download=False)     # the flat file is Fashion-MNIST's
    states = {(r.dataset, r.split, r.role): r.state for r in data.verify(flat)}
    assert states["fashion-mnist", "test", "images"] == "present"
    assert states["mnist", "test", "images"] == "missing"


def test_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        data.load("binarized-mnist", "valid", data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "binarized_mnist" / "binarized_mnist_valid.amat") in msg
    assert catalog._BMNIST_URL + "binarized_mnist_valid.amat" in msg
    assert catalog._BMNIST_URL == "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
    monkeypatch.setenv("BIASVAR_OFFLINE", "1")
    with pytest.raises(DataError, match="BIASVAR_OFFLINE"):
        data.load("omniglot-d", data_dir=tmp_path)                    # download=None, offline: no fetch


def test_download_goes_through_temp_file_verify_rename(synthetic, monkeypatch):
    root, arrays = synthetic
    path = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    good = path.read_bytes()
    path.unlink()
    calls, seen = [], []

    def fake_fetch(url, dest, *, timeout, progress=None):
        calls.append(url)
        assert dest.parent == path.parent and dest != path and timeout <= 30
        if "ossci" in url:
            raise OSError("network is unreachable")                    # the mirror fails: fall back
        dest.write_bytes(good)
        progress(dest.name, len(good), len(good))

    monkeypatch.setattr(download, "_fetch", fake_fetch)
    ds = data.load("mnist", "test", data_dir=root, download=True, progress=lambda *a: seen.append(a))
    assert ds.labels.tolist() == arrays["mnist", "test"][1].tolist()
    assert calls == [u + "t10k-labels-idx1-ubyte.gz" for u in catalog._MNIST_URLS]
    assert seen == [("t10k-labels-idx1-ubyte.gz", len(good), len(good))]
    assert path.read_bytes() == good and sorted(p.name for p in path.parent.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz"]


def test_bad_download_is_not_left_behind(synthetic, monkeypatch):
    root, _ = synthetic
    folder = root / "omniglot"
    shutil.rmtree(folder)
    def fake_fetch(url, dest, **kw):
        dest.write_bytes(b"<html>rate limited</html>")

    monkeypatch.setattr(download, "_fetch", fake_fetch)
    with pytest.raises(DataError) as e:
        data.load("omniglot-d", "train", data_dir=root)                # download=None: tries
    msg = str(e.value)
    assert "failed verification" in msg and str(folder / "chardata.mat") in msg
    assert list(folder.iterdir()) == []                                # no partial or bad file remains


def test_verify_states_and_bad_dirs(synthetic, tmp_path, monkeypatch):
    root, _ = synthetic
    (root / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    (root / "omniglot" / "chardata.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    rows = {(r.dataset, r.split, r.role): r for r in data.verify(root)}
    assert rows["mnist", "train", "labels"].state == "missing"
    assert rows["mnist", "train", "labels"].path == root / "mnist" / "train-labels-idx1-ubyte.gz"
    assert rows["omniglot", "train+test", "images"].state == "corrupt"
    assert "expected MD5" in rows["omniglot", "train+test", "images"].detail
    assert rows["omniglot", "train+test", "images"].used_by == ("omniglot-d",)
    assert rows["mnist", "test", "images"].used_by == ("mnist-b", "mnist")
    assert sum(r.state == "present" for r in rows.values()) == len(rows) - 2
    afile = tmp_path / "a-file"
    afile.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        data.verify(afile)
    with pytest.raises(DataError, match="does not exist"):
        data.verify(tmp_path / "nope")
    with pytest.raises(DataError, match="not a directory"):
        data.load("mnist", data_dir=afile, download=False)


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("BIASVAR_DATA", str(tmp_path / "env"))
    assert data.data_dir(tmp_path / "x") == tmp_path / "x"
    assert data.data_dir() == tmp_path / "env"
    monkeypatch.delenv("BIASVAR_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.data_dir() == tmp_path / "cache" / "biasvar"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.data_dir() == Path.home() / ".cache" / "biasvar"


def test_unknown_name_or_split():
    assert set(data.DATASETS) == {"mnist-b", "mnist", "omniglot-d", "fmnist", "binarized-mnist"}
    with pytest.raises(DataError, match="expected one of: mnist-b, mnist"):
        data.load("mnist-c", download=False)
    with pytest.raises(DataError, match="no split 'valid'; expected one of: train, test"):
        data.load("mnist", "valid", download=False)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def test_cli_data_verify(synthetic, tmp_path):
    root, _ = synthetic
    (root / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really")
    result = runner.invoke(app, ["data", "verify", "--data-dir", str(root)], terminal_width=200)
    assert result.exit_code == 1, result.output  # issue 12: a corrupt or missing file is not success
    assert "10 present, 1 missing, 1 corrupt" in result.output
    assert "error: 1 dataset files missing, 1 corrupt" in result.output
    for word in ("present", "missing", "corrupt", "binarized-mnist", "omniglot"):
        assert word in result.output
    asked = runner.invoke(app, ["data", "verify", "binarized-mnist", "--data-dir", str(root)], terminal_width=200)
    assert asked.exit_code == 0 and "0 missing, 0 corrupt" in asked.output, asked.output
    asked = runner.invoke(app, ["data", "verify", "mnist-b", "--data-dir", str(root)], terminal_width=200)
    assert asked.exit_code == 1 and "0 missing, 1 corrupt" in asked.output, asked.output
    unknown = runner.invoke(app, ["data", "verify", "nope", "--data-dir", str(root)])
    assert unknown.exit_code == 1 and "unknown dataset nope" in unknown.output
    afile = tmp_path / "f.txt"
    afile.write_text("")
    bad = runner.invoke(app, ["data", "verify", "--data-dir", str(afile)])
    assert bad.exit_code == 1
    assert "not a directory" in bad.output and len(bad.output.strip().splitlines()) == 1
