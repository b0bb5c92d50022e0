"""Where and in which precision torch work runs: one rule for ``train`` and ``sample``."""

from __future__ import annotations

import torch

from biasvar.errors import SpecError, UnsupportedError
from biasvar.names import DEVICES, DTYPES


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; refuses CUDA where there is none."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UnsupportedError(f"unknown device {device!r}; expected {', '.join(DEVICES)} or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError(f"device {device!r} requested but CUDA is not available here; "
                               "use --device cpu")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
           "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
           "tf32": torch.float32}  # float32 numbers; the TF32 matmuls are set by matmul_precision


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """None (keep the snapshot's dtype), a torch dtype, or "float32"/"float64"."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise SpecError(f"unknown dtype {dtype!r}; expected {' or '.join(DTYPES)}") from None


def matmul_precision(dtype: str | torch.dtype | None, device: torch.device) -> str | None:
    """Set the float32 matmul mode of a run on ``device`` from its ``--dtype``; returns ``"tf32"`` when the
    run's matmuls (and cuDNN convolutions) use TF32 tensor cores, else None.

    ``tf32`` is a CUDA mode (about 10 bits of mantissa in the products, float32 sums): refused on other
    devices. Any other dtype on CUDA turns TF32 off, cuDNN's included (torch allows it there by default),
    so a float32 run is float32 throughout. The setting is process-wide, as torch's is: one process runs
    one precision.
    """
    tf32 = isinstance(dtype, str) and dtype.lower() == "tf32"
    if tf32 and device.type != "cuda":
        raise UnsupportedError(f"--dtype tf32 (TF32 tensor-core matmuls) needs a CUDA device, not {device.type}; "
                               "use float32")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return "tf32" if tf32 else None


__all__ = ["matmul_precision", "resolve_device", "resolve_dtype"]
