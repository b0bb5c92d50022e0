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
           "float64": torch.float64, "fp64": torch.float64, "double": torch.float64}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """None (keep the snapshot's dtype), a torch dtype, or "float32"/"float64"."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise SpecError(f"unknown dtype {dtype!r}; expected {' or '.join(DTYPES)}") from None


__all__ = ["resolve_device", "resolve_dtype"]
