"""The sampling engine: many independent gradient samples of one estimator at one snapshot.

A *draw* is one gradient sample: the gradient in the selected parameters of
``draw_loss(problem, estimator, params, noise_i)`` (a batch-mean loss for a plug-in estimator,
the leave-one-out surrogate of M forward passes for ``rf(M)``). The engine computes a chunk of
draws at once,

    ``torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(selected_params, noise)``,

so a chunk of m draws is one batched forward and one batched backward: the parameters are
shared (``in_dims=None``), the noise is batched, and the per-draw weight gradients come out as
batched products, with no Python-level backward per draw.

The package, one step per module (imports go down this list only):

* :mod:`~biasvar.engine.settings`: memory sizes, the parameters to differentiate (``--params``)
  and their layout, the problem's copy on the device;
* :mod:`~biasvar.engine.gradients`: :func:`vmap_gradients` and its per-draw twin
  :func:`loop_gradients` (one ``torch.autograd.grad`` per draw on the same noise; tests and
  ``biasvar bench``);
* :mod:`~biasvar.engine.chunks`: how many draws one call computes (memory budget, OOM halving);
* :mod:`~biasvar.engine.calibration`: which of vmap and loop is faster here (:class:`Calibration`);
* :mod:`~biasvar.engine.draws`: the draw path of a run (:class:`DrawPath`: chunk sizing and the
  chosen path) and :func:`sample_gradients`, the iterator over draws;
* :mod:`~biasvar.engine.blocks`: the block statistics a run file stores
  (:class:`~biasvar.stats.moments.Moments` per block) and the block size;
* :mod:`~biasvar.engine.plan`: :func:`plan_run`, a run settled once (:class:`RunPlan`);
* :mod:`~biasvar.engine.runs`: :func:`sample` (a plan into its file), :func:`fill` (a range of
  draws into a writer) and :func:`sample_run` (plan and sample, by keywords);
* :mod:`~biasvar.engine.shards`: a run cut into block-aligned shards, and their merge;
* :mod:`~biasvar.engine.sweeps`: :func:`plan_sweep`, a reference and many tested estimators;
* :mod:`~biasvar.engine.executors`: :func:`run_sweep`, the one way a sweep is run, with a local or
  a Ray executor.

Reproducibility. Draw ``i`` of a run uses the noise ``rng.draw_noise(requests, key, [i])`` with
``key = rng.stream_key(seed, canonical_spec)``. That noise is a counter-based hash of
``(key, i, element)`` (see :mod:`biasvar.rng`): there is no generator state, so draw i gets the
same numbers whichever chunk computes it, whether the run was interrupted and resumed, and on
whatever device. The chunk size therefore only caps memory and never changes the numbers
(beyond float summation order). The stream key includes the canonical spec, so two estimators
run with the same seed get independent noise, as Eq. 16 assumes for the reference's and the
tested estimator's draws.

CPU method. Measured on a 2-core CPU with ``biasvar bench`` (``results/bench/README.md``): on the
toy problems vmap is 20-580x faster than the loop (the loop is all Python and kernel-launch
overhead); on the Fig. 1 VAE, whose Bernoulli NLL is written as ``softplus(l) - x l`` (vmap has no
fused rule for ``binary_cross_entropy_with_logits``), vmap and the loop are within 0.97-1.17x on
an idle machine with two threads (both do the same matmuls). Since the margin depends on the
problem, the estimator and the machine's load, ``method="auto"`` takes the faster path per
(problem, estimator family, device, chunk) from a short calibration (:mod:`biasvar.engine.calibration`,
kept by a :class:`Calibration` object: a sweep's own, else the process's), except for a run of at
most :data:`~biasvar.engine.draws.UNTIMED_CHUNKS` chunks, which takes vmap untimed; smaller chunks
are slightly faster on the CPU, hence its 512 MiB default budget.
"""

from biasvar.device import resolve_device, resolve_dtype
from biasvar.engine.blocks import BlockBuilder, choose_block_size, keep_index
from biasvar.engine.calibration import Calibration
from biasvar.engine.chunks import ChunkSizer, estimate_bytes_per_draw
from biasvar.engine.draws import DrawPath, choose_method, engine_path, plan_draws, sample_gradients
from biasvar.engine.executors import Local, Ray, make_executor, run_sweep
from biasvar.engine.gradients import METHODS, GradChunk, loop_gradients, vmap_gradients
from biasvar.engine.plan import RunOptions, RunPlan, check_run_args, plan_run
from biasvar.engine.runs import check_run_room, check_sweep_room, fill, sample, sample_run
from biasvar.engine.settings import params_glob, parse_memory, prepare, select_params, selected_layout
from biasvar.engine.sweeps import PlannedRun, RunProgress, SweepPlan, overall_progress, plan_sweep

__all__ = [
    "METHODS", "BlockBuilder", "Calibration", "ChunkSizer", "DrawPath", "GradChunk", "Local", "PlannedRun", "Ray",
    "RunOptions", "RunPlan", "RunProgress", "SweepPlan", "check_run_args", "check_run_room", "check_sweep_room",
    "choose_block_size", "choose_method",
    "engine_path", "estimate_bytes_per_draw", "fill", "keep_index", "loop_gradients", "make_executor",
    "overall_progress", "params_glob", "parse_memory", "plan_draws", "plan_run", "plan_sweep", "prepare",
    "resolve_device", "resolve_dtype", "run_sweep", "sample", "sample_gradients", "sample_run", "select_params",
    "selected_layout", "vmap_gradients",
]
