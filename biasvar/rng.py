"""Counter-based noise: every noise element of every draw is a pure function of its address.

A run's noise is keyed by ``(seed, stream, draw index, element index)``:

* ``stream_key(seed, spec)`` derives a 64-bit key from the seed *and* the canonical spec string,
  so two estimators run with the same seed still get independent noise (Eq. 16 needs the
  reference's draws and the tested estimator's draws independent).
* ``uniforms(key, draws, numel)`` hashes ``(key, draw, element)`` with integer tensor ops
  (the 32-bit "lowbias32" mixer of C. Wellons): a per-draw word ``hd`` (four chained mixes of the
  key and the 64-bit draw index), a per-element word ``he = mix(element ^ c)``, and the value
  ``a = mix(hd ^ he)``. There is no generator state, so draw ``i`` gets the same numbers whatever
  chunk it is computed in, and a run can be split, resumed or recomputed block by block without
  changing its numbers.

Invariances (tested in tests/test_rng*.py):

* The uniforms are **bit-identical** across chunkings, resumes, shards (any split of the draws
  or of the element range), across the fused and the plain implementation (below), across
  CPU thread counts, and across CPU and CUDA: every step is exact integer arithmetic modulo 2^32
  followed by an exact conversion (24 bits scaled by 2^-24), so no rounding can differ.
* The transformed noise (``-log U``, ``-log(-log U)``) is one elementwise ``log`` per step and may
  differ between devices by the last bit of the device's ``log``; on one device it is a pure
  function of the address too.

Speed. The per-(draw, element) work is one 32-bit mix. On the CPU it runs in int32 tensors with
wrap-around multiplication (``torch.int32`` arithmetic is two's complement; logical right shifts
are an arithmetic shift and a mask), in place, so a chunk costs a handful of passes over 4-byte
words; when ``torch.compile`` works (a C++ compiler is found), large requests go through one
fused kernel that writes the float32 uniforms in a single pass over memory. Compilation is an
optimisation only: the two paths give identical bits, and any failure falls back to the plain
path (set ``BIASVAR_COMPILE=0`` to never compile).

The values are in the open interval (0, 1). float32 (and lower precisions): the top 24 bits ``k``
of the word give the cell midpoint ``(k + 1/2) 2^-24``, rounded to float32 -- exact below 1/2; from
1/2 up, where float32 has 23 fractional bits, the tie rounds to even, which puts the value on the
2^-23 grid with each point's mass centred on it (unbiased). float64: 53 bits, the word and a
further mix of it (2^32 distinct values per element, spread over the 53-bit grid).

This is noise version :data:`NOISE_VERSION` (1 since the first release: the uniforms have never
changed; an implementation that changes any bit must bump it).
"""

from __future__ import annotations

import os
import threading
import zlib

import numpy as np
import torch
from torch import Tensor

NOISE_VERSION = 1

_M32 = 0xFFFFFFFF
_C_HI, _C_EL, _C_F64 = 0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35
_M1, _M2 = 0x7FEB352D, 0x846CA68B
COMPILE_MIN_ELEMENTS = 1 << 20  # smaller requests take the plain path (no compile latency)


def stream_key(seed: int, stream: str | int) -> tuple[int, int]:
    """Two 32-bit words keyed by ``seed`` and a stream name (the canonical spec) or id."""
    sid = stream if isinstance(stream, int) else zlib.crc32(str(stream).encode())
    state = np.random.SeedSequence(int(seed), spawn_key=(int(sid),)).generate_state(2, np.uint32)
    return int(state[0]), int(state[1])


def _mix32(x: Tensor) -> Tensor:
    """lowbias32 integer hash on int64 tensors holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * _M1) & _M32
    x = x ^ (x >> 15)
    x = (x * _M2) & _M32
    x = x ^ (x >> 16)
    return x


def _s32(v: int) -> int:
    """An unsigned 32-bit constant as the int32 with the same bits."""
    v &= _M32
    return v - (1 << 32) if v >= 1 << 31 else v


_M1_S, _M2_S, _C_EL_S = _s32(_M1), _s32(_M2), _s32(_C_EL)
_F32_TOP = 1.0 - torch.finfo(torch.float32).eps / 2  # largest float32 below 1


def _mix32_i32(x: Tensor) -> Tensor:
    """lowbias32 on int32 tensors (same bits as :func:`_mix32`), in place: ``x`` is overwritten."""
    x ^= (x >> 16) & 0xFFFF
    x *= _M1_S
    x ^= (x >> 15) & 0x1FFFF
    x *= _M2_S
    x ^= (x >> 16) & 0xFFFF
    return x


def _to_i32(x: Tensor) -> Tensor:
    """int64 values in [0, 2^32) -> int32 with the same 32 bits (exact, no overflowing cast)."""
    return ((x ^ 0x80000000) - 0x80000000).to(torch.int32)


def _draw_hash(key: tuple[int, int], draws: Tensor) -> Tensor:
    lo, hi = draws & _M32, (draws >> 32) & _M32
    h = _mix32(hi ^ _C_HI)
    h = _mix32(lo ^ h)
    h = _mix32(h ^ key[0])
    return _mix32(h ^ key[1])  # [n]


def _bits_plain(hd: Tensor, offset: int, numel: int) -> Tensor:
    """int32 [n, numel]: ``mix(hd ^ mix(element ^ c))``, in int32 and in place."""
    el = torch.arange(offset, offset + numel, device=hd.device, dtype=torch.int32)
    he = _mix32_i32(el.bitwise_xor_(_C_EL_S))  # [numel]
    a = hd[:, None] ^ he[None, :]
    return _mix32_i32(a)


def _f32_plain(hd: Tensor, offset: int, numel: int) -> Tensor:
    a = _bits_plain(hd, offset, numel)
    a = a.bitwise_right_shift_(8).bitwise_and_(0xFFFFFF)
    return a.to(torch.float32).add_(0.5).mul_(2.0**-24)


def _f32_fused(hd: Tensor, offset: Tensor, numel: int) -> Tensor:
    """The same as :func:`_f32_plain`, written out of place for ``torch.compile`` to fuse."""
    el = torch.arange(numel, device=hd.device, dtype=torch.int32) + offset
    x = el ^ _C_EL_S
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _M1_S
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * _M2_S
    x = x ^ ((x >> 16) & 0xFFFF)
    a = hd[:, None] ^ x[None, :]
    a = a ^ ((a >> 16) & 0xFFFF)
    a = a * _M1_S
    a = a ^ ((a >> 15) & 0x1FFFF)
    a = a * _M2_S
    a = a ^ ((a >> 16) & 0xFFFF)
    u = (((a >> 8) & 0xFFFFFF).to(torch.float32) + 0.5) * (2.0**-24)
    return torch.clamp(u, max=_F32_TOP)  # the clamp of :func:`uniforms`, fused (exact: same bits)


_compiled: dict[str, object] = {}
_compile_lock = threading.Lock()


def compile_enabled() -> bool:
    """Whether large requests may use a ``torch.compile``d kernel (``BIASVAR_COMPILE=0`` disables)."""
    return os.environ.get("BIASVAR_COMPILE", "1") not in ("0", "false", "no", "off", "")


def compiled(name: str, fn, *, dynamic: bool | None = True):
    """``torch.compile(fn, dynamic=dynamic)``, cached per process; None where compiling fails.

    ``dynamic=True``: every size is symbolic; ``None``: sizes are specialised except the dimensions
    the caller marks dynamic (:func:`_call_compiled` ``dynamic_dims``), which keeps the small,
    fixed dimensions of a kernel (GR-MC's M and K) constant for the compiler's vectorisation.
    Callers must give identical results with ``fn`` itself: this is a speed-up only.
    """
    if not compile_enabled():
        return None
    with _compile_lock:
        if name not in _compiled:
            try:
                _compiled[name] = torch.compile(fn, dynamic=dynamic)
            except Exception:  # noqa: BLE001 - no compiler or backend: the plain path
                _compiled[name] = None
        return _compiled[name]


def _plain_input(x):
    """A tensor the compiled kernels can take without recompiling: contiguous and not a view.

    Dynamo guards on a view's base (its size and strides), and a chunk of draws is often a view of
    a larger tensor whose size changes with the chunk: each new base would be a new compilation,
    and past ``torch._dynamo.config.recompile_limit`` (8) the kernel silently runs eagerly. A
    contiguous view from the start of its memory is passed detached (not a view, no copy); other
    views and non-contiguous tensors are copied (the kernels' small inputs).
    """
    if not isinstance(x, Tensor):
        return x
    if not x.is_contiguous() or x.storage_offset() != 0:
        return x.clone(memory_format=torch.contiguous_format)
    return x.detach() if x._base is not None else x  # the same memory, no longer a view


def _call_compiled(name: str, fn, *args, dynamic: bool | None = True,
                   dynamic_dims: dict[int, tuple[int, ...]] | None = None):
    """Run the compiled ``fn`` (None when it is unavailable or fails: the caller falls back).

    Tensor arguments are passed contiguous and not as views (:func:`_plain_input`);
    ``dynamic_dims`` maps an argument's position to the dimensions marked dynamic (with
    ``dynamic=None``), e.g. the row count of a chunk.
    """
    cfn = compiled(name, fn, dynamic=dynamic)
    if cfn is None:
        return None
    args = tuple(_plain_input(a) for a in args)
    for i, dims in (dynamic_dims or {}).items():
        for d in dims:
            torch._dynamo.maybe_mark_dynamic(args[i], d)
    try:
        return cfn(*args)
    except Exception:  # noqa: BLE001 - a failing compile is remembered; the plain path answers
        with _compile_lock:
            _compiled[name] = None
        return None


def bits(key: tuple[int, int], draws: Tensor, numel: int, *, offset: int = 0,
         device: torch.device | str | None = None) -> Tensor:
    """The 32-bit words behind :func:`uniforms` (int32 [n, numel], two's complement): the integer stream.

    float32 uniforms use the top 24 bits ``k`` of each word, as ``(k + 1/2) 2^-24`` rounded to
    float32; float64 ones use the word and a further mix of it (53 bits).
    """
    device = draws.device if device is None else torch.device(device)
    draws = draws.to(device=device, dtype=torch.int64)
    return _bits_plain(_to_i32(_draw_hash(key, draws)), int(offset), int(numel))


def uniforms(
    key: tuple[int, int],
    draws: Tensor,
    numel: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    offset: int = 0,
    fused: bool | None = None,
) -> Tensor:
    """Uniform(0, 1) numbers for ``draws`` (int64 [n]) x elements ``offset .. offset+numel``.

    Args:
        fused: None = the fused (compiled) kernel for requests of at least
            :data:`COMPILE_MIN_ELEMENTS` when available; False = always the plain path; True = try
            the fused kernel whatever the size. Every choice gives the same bits.

    Returns:
        Tensor [n, numel] of ``dtype`` on ``device``, strictly inside (0, 1).
    """
    device = draws.device if device is None else torch.device(device)
    draws = draws.to(device=device, dtype=torch.int64)
    offset, numel = int(offset), int(numel)
    _check_range(offset, numel)
    return _uniforms_hashed(_draw_hash(key, draws), offset, numel, dtype=dtype, fused=fused)


def _check_range(offset: int, numel: int) -> None:
    if offset < 0 or numel < 0 or offset + numel > 1 << 31:
        raise ValueError(f"element range {offset} .. {offset + numel} outside [0, 2^31)")


def _uniforms_hashed(hd: Tensor, offset: int, numel: int, *, dtype: torch.dtype = torch.float32,
                     fused: bool | None = None) -> Tensor:
    """:func:`uniforms` from the per-draw words ``hd`` (int64 [n] in [0, 2^32)) on their device."""
    device, n = hd.device, hd.shape[0]
    if dtype == torch.float64:
        he = _mix32((torch.arange(offset, offset + numel, device=device, dtype=torch.int64) & _M32) ^ _C_EL)
        a = _mix32(hd[:, None] ^ he[None, :])  # [n, numel], 32 random bits
        b = _mix32(a ^ _C_F64)
        bits = (a << 21) | (b >> 11)  # 53 bits
        u = (bits.to(torch.float64) + 0.5) * (2.0**-53)
    else:
        hd32 = _to_i32(hd)
        u = None
        if n * numel > 0 and (fused or (fused is None and n * numel >= COMPILE_MIN_ELEMENTS)):
            u = _call_compiled("uniforms_f32", _f32_fused, hd32, torch.tensor(offset, dtype=torch.int32,
                                                                              device=device), numel)
            if u is not None and dtype == torch.float32:
                return u  # already clamped below 1
        if u is None:
            u = _f32_plain(hd32, offset, numel)
        if dtype != torch.float32:
            u = u.to(dtype)
    # the top value (2^b - 1/2) 2^-b rounds to exactly 1.0 (ties to even): keep U < 1, else E = -log U = 0
    return u.clamp_(max=1.0 - torch.finfo(u.dtype).eps / 2)


#: Noise kind whose numbers are not generated by :func:`draw_noise`: the consumer gets each draw's
#: *address* (:func:`counter_noise`) and generates the uniforms itself, block by block, with
#: :func:`counter_uniforms` (the same numbers as kind ``"uniform"``, bit for bit). GR-MC uses it for
#: its M x K conditional numbers per variable, which would otherwise be written to memory and read
#: back once (20 MB per Fig. 1 draw).
COUNTER = "counter"


def counter_noise(key: tuple[int, int], draws: Tensor, offset: int, numel: int, *,
                  device: torch.device | str | None = None) -> Tensor:
    """The address of draws' noise elements ``offset .. offset + numel``: int64 [n, 3], rows
    ``(word, offset, numel)`` with ``word`` the draw's 32-bit hash of ``(key, draw)``."""
    device = draws.device if device is None else torch.device(device)
    draws = draws.to(device=device, dtype=torch.int64)
    _check_range(int(offset), int(numel))
    out = torch.empty(draws.shape[0], 3, dtype=torch.int64, device=device)
    out[:, 0] = _draw_hash(key, draws)
    out[:, 1], out[:, 2] = int(offset), int(numel)
    return out


def counter_uniforms(counter: Tensor, *, start: int = 0, count: int | None = None,
                     dtype: torch.dtype = torch.float32, fused: bool | None = None) -> Tensor:
    """Numbers ``start .. start + count`` of the noise a :func:`counter_noise` row addresses:
    [n, count], equal bit for bit to ``uniforms(key, draws, numel, offset=offset)[:, start:start + count]``.

    ``counter``: int64 [n, 3] (or [3], one draw); the rows must share ``offset`` and ``numel`` (the
    rows of one request do).
    """
    ctr = counter.reshape(-1, 3)
    if ctr.shape[0] == 0:
        return torch.empty(0, 0 if count is None else int(count), dtype=dtype, device=counter.device)
    offset, numel = int(ctr[0, 1]), int(ctr[0, 2])
    if ctr.shape[0] > 1 and not bool(((ctr[:, 1] == offset) & (ctr[:, 2] == numel)).all()):
        raise ValueError("counter noise rows of one call must share their element range")
    count = numel - int(start) if count is None else int(count)
    if start < 0 or count < 0 or start + count > numel:
        raise ValueError(f"numbers {start} .. {start + count} outside the request's {numel}")
    return _uniforms_hashed(ctr[:, 0], offset + int(start), count, dtype=dtype, fused=fused)


def gumbel_from_uniform(u: Tensor) -> Tensor:
    """G = -log(-log U), Gumbel(0, 1) (in place: ``u`` is overwritten)."""
    return u.log_().neg_().log_().neg_()


def exponential_from_uniform(u: Tensor) -> Tensor:
    """E = -log U, Exp(1) (in place: ``u`` is overwritten)."""
    return u.log_().neg_()


TRANSFORMS = {"gumbel": gumbel_from_uniform, "exponential": exponential_from_uniform, "uniform": lambda u: u}
KINDS = (*TRANSFORMS, COUNTER)


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
            if kind not in KINDS:
                raise ValueError(f"unknown noise kind {kind!r}; expected one of {sorted(KINDS)}")
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
    """Noise of draws ``draws`` (int64 [n]): node -> name -> Tensor [n, *shape]; for kind
    :data:`COUNTER` the draws' addresses, int64 [n, 3] (:func:`counter_noise`)."""
    out: dict[str, dict[str, Tensor]] = {}
    n = draws.shape[0]
    for node, name, shape, kind, offset in noise_layout(requests):
        numel = int(np.prod(shape, dtype=np.int64))
        if kind == COUNTER:
            out.setdefault(node, {})[name] = counter_noise(key, draws, offset, numel, device=device)
            continue
        u = uniforms(key, draws, numel, dtype=dtype, device=device, offset=offset)
        out.setdefault(node, {})[name] = TRANSFORMS[kind](u).reshape(n, *shape)
    return out
