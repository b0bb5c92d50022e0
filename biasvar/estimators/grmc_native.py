"""GR-MC's counter moments in one native CPU pass: the uniforms, weights and (S, C) of a row at a time.

:func:`biasvar.estimators.grmc.counter_moments` (the engine's path) spends its time on elementwise
work over M x K numbers per variable (5.1 M per Fig. 1 draw): the counter hash, ``-log U``, the power
``(1 + r)^(-1/t)``, the normalisation and ``C = mean_m s s^T``. The ``torch.compile``d kernels do it in
several passes over memory (uniforms; weights, whose row sum inductor computes by recomputing the
weights; a batched matmul for C). This module does it in one pass per row with the vector types
torch's own kernels use (``at::vec::Vectorized`` and libtorch's Sleef): the row's numbers are made in
a cache-sized buffer, each sample's ``s_m`` (one vector when K is the vector width, 16 floats with
AVX-512) is normalised in registers and added into ``C`` held in registers.

The uniforms are those of :func:`biasvar.rng.counter_uniforms` bit for bit (the same int32 hash,
conversion and clamp); ``E = -log U`` uses Sleef's 3.5-ulp ``log`` (half the time of the 1-ulp one
torch's ``log`` uses; the weights' ``log``/``exp`` are the 1-ulp ones), and weights below float's
normal range are flushed to 0, so the moments agree with the torch path to float rounding (tests
check both against float64 arithmetic on the same uniforms: the native error is at most twice the
torch path's). ``w = (1 + r)^(-1/t)`` is computed by multiplications
when ``2/t`` is a whole number up to ``2 * MAX_POWER`` (t = 0.1: ``v^-10``; t = 2: ``1/sqrt(v)``),
else as ``exp(log(v) * -1/t)``. Every row depends only on its own inputs, so a draw's result is the
same bits in any chunk and with any number of threads (rows are split across threads; ctypes
releases the GIL).

The source is compiled once per machine with the C++ compiler torch.compile uses (``CXX``, else
``c++``) for the CPU capability torch reports (AVX-512, AVX2, or portable code), cached under
``$BIASVAR_NATIVE_CACHE`` (default ``~/.cache/biasvar/native``) by a hash of the source, flags and
torch version, and loaded with ctypes. It is an optimisation only: no compiler, a failed build, or
``BIASVAR_COMPILE=0`` gives None, and the caller uses the torch path.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from biasvar import rng

_SOURCE = r"""
#include <ATen/cpu/vec/vec.h>
#include <ATen/cpu/vec/functional.h>
#include <algorithm>
#include <cstdint>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define GRMC_X86 1
#endif
#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
extern "C" __m512 Sleef_logf16_u35(__m512);  // libtorch_cpu's Sleef: log within 3.5 ulp, 2x cheaper than u10
#define GRMC_LOG_U35(x) Vec(Sleef_logf16_u35(x))
#elif defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
extern "C" __m256 Sleef_logf8_u35(__m256);
#define GRMC_LOG_U35(x) Vec(Sleef_logf8_u35(x))
#else
#define GRMC_LOG_U35(x) (x).log()
#endif

namespace {
using Vec = at::vec::Vectorized<float>;
using IVec = at::vec::Vectorized<int32_t>;
constexpr int64_t V = Vec::size();

inline float hsum(const Vec& v) {  // (Vectorized::reduce_add does not compile in the portable build)
  return at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, v);
}

inline IVec mix(IVec x) {  // lowbias32 on int32 lanes: arithmetic shifts masked to logical ones
  x = x ^ ((x >> IVec(16)) & IVec(0xFFFF));
  x = x * IVec(static_cast<int32_t>(@M1@u));
  x = x ^ ((x >> IVec(15)) & IVec(0x1FFFF));
  x = x * IVec(static_cast<int32_t>(@M2@u));
  return x ^ ((x >> IVec(16)) & IVec(0xFFFF));
}

inline Vec inv_power(Vec v, int64_t twice) {  // v^(-twice/2): the products of grmc._inv_power
  int64_t p = twice >> 1;
  Vec acc, sq = v;
  bool first = true;
  if (twice & 1) { acc = v.sqrt(); first = false; }
  while (p) {
    if (p & 1) { acc = first ? sq : acc * sq; first = false; }
    p >>= 1;
    if (p) sq = sq * sq;
  }
  return acc.reciprocal();
}

template <int64_t KT>
void rows_impl(const float* logp, const int64_t* idx, int64_t n_draws, int64_t R, int64_t b0, int64_t b1, int64_t M,
               int64_t Kr, const int32_t* hd, int64_t el0, float coef, int64_t twice, float* S, float* C) {
  const int64_t K = KT ? KT : Kr, MK = M * K;
  std::vector<float> ebuf(MK + V), sbuf(MK + V), invp(K + V), cacc(K * K);
  std::vector<int32_t> hbuf(MK + V);
  float* e = ebuf.data();
  float* s = sbuf.data();
  int32_t* he = hbuf.data();
  const IVec cel(static_cast<int32_t>(@C_EL@u));
  const Vec top(1.0f - 0.5f * 1.1920928955078125e-07f), half(0.5f), scale(5.9604644775390625e-08f), one(1.0f),
      cf(coef);
  for (int64_t b = b0; b < b1; ++b) {
    const int32_t base = static_cast<int32_t>(el0 + b * MK);
    for (int64_t j = 0; j < MK; j += V)  // the element words mix(element ^ c): the same for every draw
      mix(IVec::arange(base + static_cast<int32_t>(j), 1) ^ cel).store(he + j, std::min(V, MK - j));
   for (int64_t i = 0; i < n_draws; ++i) {
    const int64_t row = i * R + b;
    const float* lp = logp + row * K;
    const int64_t ix = idx[row];
    const IVec hdv(hd[i]);
    for (int64_t k0 = 0; k0 < K; k0 += V) {
      const int64_t n = std::min(V, K - k0);
      (Vec::loadu(lp + k0, n).neg()).exp().store(invp.data() + k0, n);
    }
    for (int64_t j = 0; j < MK; j += V) {  // E = -log U of the row's M x K numbers
      const IVec a = mix(hdv ^ IVec::loadu(he + j, std::min(V, MK - j)));
      Vec u = at::vec::convert<float>((a >> IVec(8)) & IVec(0xFFFFFF));
      u = at::vec::minimum((u + half) * scale, top);
      GRMC_LOG_U35(u).neg().store(e + j, std::min(V, MK - j));
    }
    if constexpr (KT == V) {  // one vector per sample: s_m in registers, the sampled class by a blend
      const Vec ip = Vec::loadu(invp.data());
      const Vec isx = Vec::arange(0.0f, 1.0f) == Vec(static_cast<float>(ix));
      for (int64_t m = 0; m < M; ++m) {
        const Vec v = Vec::loadu(e + m * KT) * (ip * Vec(1.0f / e[m * KT + ix])) + one;
        Vec w = twice ? inv_power(v, twice) : (v.log() * cf).exp();
        w = Vec::blendv(w, one, isx);
        (w * Vec(1.0f / hsum(w))).store(s + m * KT);
      }
    } else {
    for (int64_t m = 0; m < M; ++m) {  // s_m = w / sum(w)
      const float* er = e + m * K;
      float* sr = s + m * K;
      const Vec q(1.0f / er[ix]);
      for (int64_t k0 = 0; k0 < K; k0 += V) {
        const int64_t n = std::min(V, K - k0);
        Vec v = Vec::loadu(er + k0, n) * (Vec::loadu(invp.data() + k0, n) * q) + one;
        Vec w = twice ? inv_power(v, twice) : (v.log() * cf).exp();
        w.store(sr + k0, n);
      }
      sr[ix] = 1.0f;
      Vec tot(0.0f);
      for (int64_t k0 = 0; k0 < K; k0 += V) tot = tot + Vec::loadu(sr + k0, std::min(V, K - k0));
      const Vec inv(1.0f / hsum(tot));
      for (int64_t k0 = 0; k0 < K; k0 += V) {
        const int64_t n = std::min(V, K - k0);
        (Vec::loadu(sr + k0, n) * inv).store(sr + k0, n);
      }
    }
    }
    float* Cb = C + row * K * K;
    if constexpr (KT == V) {  // C = sum_m s_m s_m^T in registers
      Vec acc[KT];
      for (int64_t k = 0; k < KT; ++k) acc[k] = Vec(0.0f);
      for (int64_t m = 0; m < M; ++m) {
        const Vec row = Vec::loadu(s + m * KT);
        for (int64_t k = 0; k < KT; ++k) acc[k] = at::vec::fmadd(Vec(s[m * KT + k]), row, acc[k]);
      }
      for (int64_t k = 0; k < KT; ++k) acc[k].store(cacc.data() + k * KT);
    } else {
      std::fill(cacc.begin(), cacc.end(), 0.0f);
      for (int64_t m = 0; m < M; ++m) {
        const float* sr = s + m * K;
        for (int64_t k = 0; k < K; ++k) {
          const Vec a(sr[k]);
          for (int64_t l0 = 0; l0 < K; l0 += V) {
            const int64_t n = std::min(V, K - l0);
            at::vec::fmadd(a, Vec::loadu(sr + l0, n), Vec::loadu(cacc.data() + k * K + l0, n))
                .store(cacc.data() + k * K + l0, n);
          }
        }
      }
    }
    const float fm = static_cast<float>(M);
    for (int64_t k = 0; k < K; ++k) {
      float t = 0.0f;
      for (int64_t l0 = 0; l0 < K; l0 += V) {
        const int64_t n = std::min(V, K - l0);
        const Vec c = Vec::loadu(cacc.data() + k * K + l0, n) / Vec(fm);
        c.store(Cb + k * K + l0, n);
        t += hsum(n == V ? c : Vec::loadu(Cb + k * K + l0, n));
      }
      S[row * K + k] = t;
    }
   }
  }
}
}  // namespace

// rows b0 .. b1 of n_draws draws: logp [n_draws, R, K], idx [n_draws, R], hd [n_draws] (the draws' words),
// S [n_draws, R, K], C [n_draws, R, K, K]; row b's numbers are elements el0 + b M K .. of its draw
extern "C" int grmc_counter_rows(const float* logp, const int64_t* idx, int64_t n_draws, int64_t R, int64_t b0,
                                 int64_t b1, int64_t M, int64_t K, const int32_t* hd, int64_t el0, float coef,
                                 int64_t twice, float* S, float* C) {
#ifdef GRMC_X86
  // weights below float's normal range (small t) are flushed to 0 instead of taking the slow
  // subnormal path: their share of a row sum >= 1 is below 1e-37 (this thread's MXCSR, restored)
  const unsigned int csr = _mm_getcsr();
  _mm_setcsr(csr | 0x8040u);
#endif
  if (K == V)
    rows_impl<V>(logp, idx, n_draws, R, b0, b1, M, K, hd, el0, coef, twice, S, C);
  else
    rows_impl<0>(logp, idx, n_draws, R, b0, b1, M, K, hd, el0, coef, twice, S, C);
#ifdef GRMC_X86
  _mm_setcsr(csr);
#endif
  return 0;
}
"""
# the hash constants of biasvar.rng (one definition: a change there is a change here)
SOURCE = _SOURCE.replace("@M1@", hex(rng._M1)).replace("@M2@", hex(rng._M2)).replace("@C_EL@", hex(rng._C_EL))

_FLAGS = {
    "AVX512": ["-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512", "-mavx512f", "-mavx512dq", "-mavx512vl",
               "-mavx512bw", "-mfma"],
    "AVX2": ["-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2", "-mavx2", "-mfma"],
}
_ARGTYPES = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
             ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int64,
             ctypes.c_void_p, ctypes.c_void_p]
MIN_ROWS_PER_THREAD = 64  # rows of a call split across torch's CPU threads, at least this many each

_lock = threading.Lock()
_kernels: dict[str, object] = {}
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _after_fork() -> None:
    """A forked child has none of the parent's pool threads: start a new pool (and lock) on demand."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def in_use() -> dict[str, bool]:
    """Capability -> whether its native kernel is loaded in this process (reports; builds nothing)."""
    return {cap: fn is not None for cap, fn in _kernels.items()}


def capability() -> str:
    """The CPU capability torch's kernels use here ("AVX512", "AVX2", or "DEFAULT")."""
    cap = torch.backends.cpu.get_cpu_capability()
    return cap if cap in _FLAGS else "DEFAULT"


def _cache_dir() -> Path:
    return Path(os.environ.get("BIASVAR_NATIVE_CACHE") or Path.home() / ".cache" / "biasvar" / "native")


def _build(cap: str) -> Path | None:
    """The shared library for ``cap`` (built on first use); None where no compiler works."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        return None
    tdir = Path(torch.__file__).parent
    flags = ["-O3", "-shared", "-fPIC", "-std=c++17", f"-I{tdir / 'include'}",
             *_FLAGS.get(cap, ["-DCPU_CAPABILITY=DEFAULT"])]
    libs = [f"-L{tdir / 'lib'}", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{tdir / 'lib'}"]
    tag = hashlib.sha256("\0".join([SOURCE, cxx, *flags, *libs, torch.__version__]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"grmc-{cap.lower()}-{tag}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        cpp, so = Path(tmp) / "grmc.cpp", Path(tmp) / "grmc.so"
        cpp.write_text(SOURCE)
        res = subprocess.run([cxx, *flags, str(cpp), "-o", str(so), *libs], capture_output=True, text=True,
                             timeout=600)
        if res.returncode != 0 or not so.exists():
            return None
        os.replace(so, out)  # atomic: a concurrent build of the same source writes the same file
    return out


def kernel(cap: str | None = None):
    """The native row kernel for ``cap`` (default: this CPU's), built and loaded once per process;
    None where it is disabled (``BIASVAR_COMPILE=0``) or cannot be built."""
    if not rng.compile_enabled():
        return None
    cap = cap or capability()
    with _lock:
        if cap not in _kernels:
            fn = None
            try:
                path = _build(cap)
                if path is not None:
                    fn = ctypes.CDLL(str(path)).grmc_counter_rows
                    fn.argtypes, fn.restype = _ARGTYPES, ctypes.c_int
            except (OSError, subprocess.SubprocessError):
                fn = None
            _kernels[cap] = fn
        return _kernels[cap]


def twice_power_of(t: float, max_power: int) -> int:
    """``2/t`` when it is a whole number in [1, 2 * ``max_power``] (t = 0.1: 20, t = 2: 1), else 0."""
    inv = 2.0 / float(t)
    p = round(inv)
    return int(p) if p == inv and 1 <= p <= 2 * max_power else 0


def counter_rows(fn, logp: Tensor, idx: Tensor, words: list[int], el0: int, t: float, M: int, twice: int,
                 S: Tensor, C: Tensor) -> None:
    """Fill ``S`` [n, R, K] and ``C`` [n, R, K, K] (float32, contiguous) for logp [n, R, K] (float32)
    and the sampled classes idx [n, R] (int64) of n draws whose 32-bit words are ``words``, row ``b``'s
    uniforms being elements ``el0 + b M K ..`` of its draw (M x K numbers, in order). A row's result
    depends on its own inputs only; the rows are split across torch's CPU threads."""
    global _pool
    n, R, K = logp.shape
    logp, idx = logp.contiguous(), idx.contiguous()
    hd = torch.tensor([w - (1 << 32) if w >= 1 << 31 else w for w in words], dtype=torch.int32)
    args = (logp.data_ptr(), idx.data_ptr(), n, R)
    tail = (M, K, hd.data_ptr(), el0, -1.0 / float(t), twice, S.data_ptr(), C.data_ptr())
    parts = max(1, min(torch.get_num_threads(), R // MIN_ROWS_PER_THREAD))
    if parts == 1 or n == 0:
        if n:
            fn(*args, 0, R, *tail)
        return
    with _lock:
        if _pool is None or _pool._max_workers < parts:
            _pool = concurrent.futures.ThreadPoolExecutor(parts, thread_name_prefix="grmc")
        pool = _pool
    step = -(-R // parts)
    for f in [pool.submit(fn, *args, b0, min(R, b0 + step), *tail) for b0 in range(0, R, step)]:
        f.result()
