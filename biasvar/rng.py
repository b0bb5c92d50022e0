"""Counter-based noise: every noise element of every draw is a pure function of its address.

A run's noise is keyed by ``(seed, stream, draw index, element index)``:

* ``stream_key(seed, spec)`` derives a 64-bit key from the seed *and* the canonical spec string,
  so two estimators run with the same seed still get independent noise (Eq. 16 needs the
  reference's draws and the tested estimator's draws independent).
* ``uniforms(key, draws, numel)`` hashes ``(key, draw, element)`` with integer tensor ops
  (the 32-bit "lowbias32" mixer of C. Wellons, applied in a chain). There is no generator state,
  so draw ``i`` gets the same numbers whatever chunk it is computed in, on any device, and a run
  can be split, resumed or recomputed block by block without changing its numbers.

The values are in the open interval (0, 1): 24 random bits for float32, 53 for float64.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def stream_key(seed: int, stream: str | int) -> tuple[int, int]:
    """Two 32-bit words keyed by ``seed`` and a stream name (the canonical spec) or id."""
    sid = stream if isinstance(stream, int) else zlib.crc32(str(stream).encode())
    state = np.random.SeedSequence(int(seed), spawn_key=(int(sid),)).generate_state(2, np.uint32)
    return int(state[0]), int(state[1])


def _mix32(x: Tensor) -> Tensor:
    """lowbias32 integer hash on int64 tensors holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    x = x ^ (x >> 16)
    return x


def _draw_hash(key: tuple[int, int], draws: Tensor) -> Tensor:
    lo, hi = draws & _M32, (draws >> 32) & _M32
    h = _mix32(hi ^ 0x9E3779B9)
    h = _mix32(lo ^ h)
    h = _mix32(h ^ key[0])
    return _mix32(h ^ key[1])  # [n]


def uniforms(
    key: tuple[int, int],
    draws: Tensor,
    numel: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    offset: int = 0,
) -> Tensor:
    """Uniform(0, 1) numbers for ``draws`` (int64 [n]) x elements ``offset .. offset+numel``.

    Returns:
        Tensor [n, numel] of ``dtype`` on ``device``, strictly inside (0, 1).
    """
    device = draws.device if device is None else torch.device(device)
    draws = draws.to(device=device, dtype=torch.int64)
    hd = _draw_hash(key, draws)  # [n]
    el = torch.arange(offset, offset + numel, device=device, dtype=torch.int64)
    he = _mix32((el & _M32) ^ 0x85EBCA6B)  # [numel]
    a = _mix32(hd[:, None] ^ he[None, :])  # [n, numel], 32 random bits
    if dtype == torch.float64:
        b = _mix32(a ^ 0xC2B2AE35)
        bits = (a << 21) | (b >> 11)  # 53 bits
        u = (bits.to(torch.float64) + 0.5) * (2.0**-53)
    else:
        u = ((a >> 8).to(torch.float32) + 0.5).mul_(2.0**-24).to(dtype)
    # the top value (2^b - 1/2) 2^-b rounds to exactly 1.0 (ties to even): keep U < 1, else E = -log U = 0
    return u.clamp_(max=1.0 - torch.finfo(u.dtype).eps / 2)


def gumbel_from_uniform(u: Tensor) -> Tensor:
    """G = -log(-log U), Gumbel(0, 1)."""
    return -torch.log(-torch.log(u))


def exponential_from_uniform(u: Tensor) -> Tensor:
    """E = -log U, Exp(1)."""
    return -torch.log(u)


TRANSFORMS = {"gumbel": gumbel_from_uniform, "exponential": exponential_from_uniform, "uniform": lambda u: u}


Requests = dict[str, dict[str, tuple[tuple[int, ...], str]]]  # node -> noise name -> (shape, kind)


def noise_layout(requests: Requests) -> list[tuple[str, str, tuple[int, ...], str, int]]:
    """Fixed order and element offsets of one draw's noise: ``(node, name, shape, kind, offset)``.

    ``requests`` maps node -> noise name -> (shape, kind). Sorted by (node, name), so the
    element index of every noise number is a pure function of the problem and the estimator.
    """
    out, offset = [], 0
    for node in sorted(requests):
        for name in sorted(requests[node]):
            shape, kind = requests[node][name]
            if kind not in TRANSFORMS:
                raise ValueError(f"unknown noise kind {kind!r}; expected one of {sorted(TRANSFORMS)}")
            out.append((node, name, tuple(shape), kind, offset))
            offset += int(np.prod(shape, dtype=np.int64))
    return out


def draw_noise(
    requests: dict[str, dict[str, tuple[tuple[int, ...], str]]],
    key: tuple[int, int],
    draws: Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> dict[str, dict[str, Tensor]]:
    """Noise of draws ``draws`` (int64 [n]): node -> name -> Tensor [n, *shape]."""
    out: dict[str, dict[str, Tensor]] = {}
    n = draws.shape[0]
    for node, name, shape, kind, offset in noise_layout(requests):
        numel = int(np.prod(shape, dtype=np.int64))
        u = uniforms(key, draws, numel, dtype=dtype, device=device, offset=offset)
        out.setdefault(node, {})[name] = TRANSFORMS[kind](u).reshape(n, *shape)
    return out
