"""Training a snapshot: Adam on a problem's parameters with one estimator (App. B.3 defaults).

Each step draws fresh noise and minimises :func:`~biasvar.problems.base.draw_loss` on a minibatch:
the estimator trains the model its own way (a plug-in estimator in the forward pass, or the rf(M)
surrogate). The honest objective (the negative ELBO with plain discrete samples) is tracked per
epoch, and on the fixed evaluation batch before training and after every epoch. The evaluation
batch (``eval_batch_size`` training points chosen by ``seed``) becomes ``problem.batch`` and is
stored with the snapshot.

Randomness is explicit: the step noise is draw ``step`` of the counter-based stream
``stream_key(seed, "train:" + spec)`` (:mod:`biasvar.rng`), and the minibatch order and dynamic
binarization come from ``torch.Generator`` objects seeded from ``seed``.

Errors name the library's arguments (:attr:`TrainError.argument`), never a command-line flag: the
CLI says which of its options an error is about.
"""

from __future__ import annotations

import inspect
import math
import platform
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import biasvar
from biasvar import plugins
from biasvar.atomic import ensure_room
from biasvar.device import resolve_device  # one device rule for train and sample
from biasvar.errors import BiasvarError
from biasvar.estimators import PlugIn, build
from biasvar.names import DEFAULT_DATA
from biasvar.problems.base import Problem, draw_loss, noise_requests, plain_loss
from biasvar.problems.registry import make_problem, problem_factory
from biasvar.problems.user import load_state
from biasvar.rng import draw_noise, stream_key
from biasvar.snapshot import Snapshot, save_snapshot, snapshot_of
from biasvar.spec import EstimatorSpec, parse_spec

# DEFAULT_DATA (biasvar.names): the dataset each problem kind trains on by default (None: no data).
STEPS_WITHOUT_DATA = 100  # steps per "epoch" for problems without data (toy-cat)
EVAL_ROWS = 1000  # rows of the honest evaluation loss (the evaluation batch repeated)


class TrainError(BiasvarError, ValueError):
    """Training settings that do not fit together, or a run that diverged.

    ``argument``: the name of the argument of :func:`train` (or of the function raising it) whose
    value is wrong, if one is; a front end names its own option for it.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class StateError(TrainError):
    """A training state that cannot be continued: unreadable, or written by a training of other settings
    (``argument`` is ``"resume"``). A caller that resumes where it can catches this one to start over."""

    def __init__(self, message: str) -> None:
        super().__init__(message, argument="resume")


@dataclass(frozen=True)
class TrainProgress:
    """What the ``progress`` callback receives after every step (and once per epoch end)."""

    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based within the epoch
    steps: int  # steps per epoch
    loss: float  # running mean of the honest loss in this epoch
    done: bool = False  # True on the epoch-end call
    eval_loss: float | None = None  # on the epoch-end call: honest loss on the evaluation batch


def epoch_path(out: str | Path, epoch: int) -> Path:
    """``ckpt.pt`` -> ``ckpt-e10.pt``: where ``save_at`` puts the snapshot after ``epoch``."""
    out = Path(out)
    return out.with_name(f"{out.stem}-e{int(epoch)}{out.suffix}")


def train_state_path(out: str | Path) -> Path:
    """``ckpt.pt`` -> ``ckpt.train-state.pt``: the training state :func:`train` keeps beside its snapshot
    (parameters, Adam's moments, the generators and the data order after the last finished epoch)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.train-state{out.suffix}")


def build_problem(kind: str, options: Mapping[str, Any] | None = None, *, seed: int | None = None) -> Problem:
    """A fresh problem of ``kind`` (a built-in name or a factory ``module:function``) from keyword
    options (None values dropped), with a clear error naming the options the problem takes when one
    does not fit.

    ``seed`` seeds the initialisation where the problem takes a seed and ``options`` names none.
    """
    factory = problem_factory(kind)
    opts = {k.replace("-", "_"): v for k, v in (options or {}).items() if v is not None}
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # a callable without a signature: take the options as given
        sig = None
    params = sig.parameters.values() if sig is not None else ()
    takes_any = sig is None or any(p.kind is p.VAR_KEYWORD for p in params)
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    valid = [p.name for p in params if p.kind in named]
    valid = [n for n in valid if n not in ("dtype", "logits")]
    if seed is not None and "seed" not in opts and ("seed" in valid or (sig is not None and takes_any)):
        opts["seed"] = int(seed)
    unknown = [k for k in opts if k not in valid]
    if unknown and not takes_any:
        raise TrainError(f"model {kind} does not take option(s) {', '.join(unknown)}; "
                         f"its options: {', '.join(valid) or 'none'}")
    try:
        return make_problem(kind, opts)
    except BiasvarError:
        raise
    except (TypeError, ValueError) as e:
        raise TrainError(f"model {kind}: bad option value ({e})") from None


def load_data(kind: str, name: str | None = None, *, data_dir: str | Path | None = None,
              download: bool | None = None, progress: Callable[[str, int, int | None], None] | None = None):
    """The training split a problem kind trains on: ``name``, else its default (``DEFAULT_DATA``).

    Returns None for problems without data (toy-cat); naming a dataset for one of those is an error.
    """
    from biasvar import data as datasets  # looked up at call time (tests substitute synthetic data)

    default = DEFAULT_DATA.get(kind)
    if name is None:
        name = default
        if name is None:
            return None
    elif kind in DEFAULT_DATA and default is None:
        raise TrainError(f"model {kind} trains without data; got dataset {name!r}", argument="data")
    return datasets.load(name, "train", data_dir=data_dir, download=download, progress=progress)


# Name of each problem kind's honest loss, for progress displays.
LOSS_NAMES = {"vae": "neg-ELBO", "hvae": "neg-ELBO"}


def loss_name(kind: str) -> str:
    """What a problem kind's training loss is called (``neg-ELBO`` for the VAEs, else ``loss``)."""
    return LOSS_NAMES.get(kind, "loss")


def default_snapshot_path(model: str, spec: str, epochs: int, seed: int) -> Path:
    """``snapshots/<model>-<spec>-e<epochs>-s<seed>.pt`` (the spec made file-name safe)."""
    tag = re.sub(r"[^A-Za-z0-9.=-]+", "_", spec).strip("_")
    model = re.sub(r"[^A-Za-z0-9.=-]+", "_", model).strip("_")  # module:factory -> module_factory
    return Path("snapshots") / f"{model}-{tag}-e{epochs}-s{seed}.pt"


def _derived_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence(int(seed), spawn_key=(stream,)).generate_state(1, np.uint32)[0])


def _step_noise(problem: Problem, est, key, step: int, batch_size: int, dtype, device) -> dict:
    req = noise_requests(problem, est, batch_size)
    noise = draw_noise(req, key, torch.tensor([step], dtype=torch.int64), dtype=dtype, device=device)
    return {node: {k: v[0] for k, v in d.items()} for node, d in noise.items()}


class _Batches:
    """Endless model inputs: shuffled passes over ``data`` (reshuffled each pass), or ``problem.batch``.

    Its position (the pass's order and the next start) is part of the training state, so a resumed
    training draws the same minibatches as one that never stopped."""

    def __init__(self, problem: Problem, data: Any, batch_size: int, order_gen: torch.Generator,
                 binarize_gen: torch.Generator, device: torch.device) -> None:
        self.problem, self.data, self.batch_size, self.device = problem, data, int(batch_size), device
        self.order_gen, self.binarize_gen = order_gen, binarize_gen
        self.order: Tensor | None = None
        self.start = 0

    def __iter__(self) -> Iterator[Tensor]:
        return self

    def __next__(self) -> Tensor:
        if self.data is None:
            return self.problem.batch
        N = int(self.data.images.shape[0])
        if self.order is None or self.start >= N:
            self.order, self.start = torch.randperm(N, generator=self.order_gen), 0
        idx = self.order[self.start: self.start + self.batch_size]
        self.start += self.batch_size
        return self.problem.make_batch(self.data, idx, self.binarize_gen).to(self.device)

    def state(self) -> dict[str, Any]:
        return {"order": self.order, "start": self.start}

    def load(self, state: Mapping[str, Any]) -> None:
        self.order, self.start = state["order"], int(state["start"])


def _eval_loss(problem: Problem, params: Mapping[str, Tensor], generator: torch.Generator) -> float:
    """Honest mean loss on the evaluation batch, plain discrete samples, >= EVAL_ROWS rows."""
    x = problem.batch
    reps = max(1, math.ceil(EVAL_ROWS / max(1, x.shape[0])))
    xr = x.repeat(reps, *([1] * (x.dim() - 1)))
    with torch.no_grad():
        return float(plain_loss(problem, params, xr, generator=generator).mean())


def _evaluate(problem: Problem, params: Mapping[str, Tensor]) -> dict[str, float]:
    """The problem's own metrics on the evaluation batch (e.g. qnet accuracy), if it has any."""
    fn = getattr(problem, "evaluate", None)
    if fn is None:
        return {}
    with torch.no_grad():
        out = fn(params, problem.batch)
    return {k: float(v) for k, v in dict(out).items()}


def _eval_entry(problem: Problem, params: Mapping[str, Tensor], epoch: int,
                generator: torch.Generator) -> dict[str, Any]:
    """One ``eval_history`` row: the honest loss on the evaluation batch, plus the problem's own
    metrics (``problem.evaluate``, e.g. qnet's deterministic accuracy) under ``metrics``."""
    entry: dict[str, Any] = {"epoch": int(epoch), "loss": _eval_loss(problem, params, generator)}
    metrics = _evaluate(problem, params)
    if metrics:
        entry["metrics"] = metrics
    return entry


def check_settings(epochs: int, batch_size: int, lr: float, eval_batch_size: int,
                    save_at: Iterable[int], out, steps_per_epoch: int | None) -> tuple[int, ...]:
    """Validate :func:`train`'s settings up front; returns the sorted ``save_at`` epochs."""
    if int(epochs) < 1:
        raise TrainError(f"epochs must be >= 1, got {epochs}", argument="epochs")
    if int(batch_size) < 1:
        raise TrainError(f"batch size must be >= 1, got {batch_size}", argument="batch_size")
    if not (lr > 0 and math.isfinite(lr)):
        raise TrainError(f"learning rate must be a positive number, got {lr}", argument="lr")
    _check_eval_batch_size(eval_batch_size)
    if steps_per_epoch is not None and int(steps_per_epoch) < 1:
        raise TrainError(f"steps per epoch must be >= 1, got {steps_per_epoch}", argument="steps_per_epoch")
    save_at = tuple(sorted({int(e) for e in save_at}))
    bad = [e for e in save_at if not 1 <= e <= epochs]
    if bad:
        raise TrainError(f"save-at epochs {bad} are outside 1..{epochs} (the number of epochs)", argument="save_at")
    if save_at and out is None:
        raise TrainError("save-at epochs need an output path to name the per-epoch snapshots", argument="out")
    return save_at


def _check_eval_batch_size(eval_batch_size: int) -> None:
    if int(eval_batch_size) < 1:
        raise TrainError(f"evaluation batch size must be >= 1, got {eval_batch_size}", argument="eval_batch_size")


def set_eval_batch(problem: Problem, data: Any, eval_batch_size: int, seed: int) -> dict[str, Any] | None:
    """The fixed evaluation batch: ``eval_batch_size`` training points of ``data`` chosen by ``seed``
    become ``problem.batch``; returns the snapshot's ``dataset`` record (None without data)."""
    info, _ = _set_eval_batch(problem, data, seed=int(seed), eval_batch_size=int(eval_batch_size), batch_size=1,
                              steps_per_epoch=1)
    return info


def snapshot_weights(problem: Problem, *, weights: str | Path | None = None, data: Any = None,
                     eval_batch_size: int = 200, seed: int = 0, out: str | Path | None = None) -> Snapshot:
    """A snapshot of ``problem`` without training (``biasvar snapshot``): at the weights of a state
    dict file (``torch.save(model.state_dict(), path)``; names and shapes must match the problem's
    parameters), else at the factory's own weights; the evaluation batch from ``data`` if given."""
    _check_eval_batch_size(eval_batch_size)
    provenance: dict[str, Any] = {"estimator": None, "epochs": 0, "seed": int(seed), "weights": None,
                                  "biasvar_version": biasvar.__version__, "torch_version": str(torch.__version__)}
    if weights is not None:
        load_state(problem, read_state_dict(weights), source=f"weights {weights}")
        provenance["weights"] = str(weights)
    dataset_info = set_eval_batch(problem, data, eval_batch_size, seed)
    provenance["data"] = getattr(data, "name", None) if data is not None else None
    provenance["eval_history"] = [_eval_entry(problem, problem.params,  0,
                                              torch.Generator().manual_seed(_derived_seed(int(seed), 3)))]
    if out is not None:
        return save_snapshot(out, problem, dataset=dataset_info, provenance=provenance)
    return snapshot_of(problem, dataset=dataset_info, provenance=provenance)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict saved with ``torch.save`` (read with ``weights_only=True``); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"weights file not found: {path}", argument="weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise TrainError(f"cannot read weights {path} as a torch state dict ({type(e).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise TrainError(f"{path} is not a state dict {{name: tensor}} (save one with "
                         f"torch.save(model.state_dict(), path))")
    return dict(state)


def train(
    problem: Problem,
    *,
    data: Any = None,
    estimator: str | EstimatorSpec = "rf(M=4)",
    epochs: int = 10,
    batch_size: int = 50,
    lr: float = 1e-4,
    seed: int = 0,
    eval_batch_size: int = 200,
    steps_per_epoch: int | None = None,
    save_at: Iterable[int] = (),
    out: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[TrainProgress], None] | None = None,
    resume: bool | str | Path = False,
) -> Snapshot:
    """Train ``problem`` in place with Adam and one estimator; return (and optionally save) its snapshot.

    Args:
        problem: any :class:`Problem`; trained in place (its ``params`` and ``batch`` are replaced,
            and it is left on the CPU).
        data: a ``biasvar.data`` dataset (``images`` [N, ...], ``dynamic``, ``name``, ``split``) turned
            into model input by ``problem.make_batch``; None for problems without data (toy-cat),
            which train on ``problem.batch``.
        estimator: spec of the estimator that trains the model (``"rf(M=4)"``, ``"zgr"``, ...).
        epochs, batch_size, lr: Adam for ``epochs`` passes over the data in shuffled minibatches
            (App. B.3: lr 1e-4, batch 50).
        seed: seeds the evaluation batch, the minibatch order, dynamic binarization and the noise.
        eval_batch_size: training points in the fixed evaluation batch (200 in the protocol).
        steps_per_epoch: steps per epoch; default a full pass over the data (100 without data).
        save_at: epochs after which ``epoch_path(out, e)`` is also saved.
        out: where the final snapshot is written (atomically); None keeps it in memory.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        progress: called with a :class:`TrainProgress` after every step and at every epoch end.
        resume: with ``out``, the training state is written after every epoch to
            ``train_state_path(out)`` (atomically; kept after the last epoch). ``True`` continues from that
            file if it is there (else starts); a path continues from that state file (e.g. a 100-epoch
            training's, to extend it to ``epochs``). A resumed training ends bit for bit where one that
            never stopped ends (same device and thread count), and refuses a state of other settings.
            ``False`` starts over (an existing state file is replaced after the first epoch).

    Returns:
        The :class:`Snapshot` of the trained problem; ``provenance`` holds the estimator, epochs,
        lr, seed, batch size, ``loss_history`` (mean honest training loss per epoch),
        ``eval_history`` (honest loss on the evaluation batch at epoch 0, 1, ...), wall time and device.
    """
    spec = parse_spec(estimator)
    est = build(spec)
    save_at = check_settings(epochs, batch_size, lr, eval_batch_size, save_at, out, steps_per_epoch)
    if resume is not False and out is None:
        raise TrainError("resuming needs an output path (the training state is kept beside the snapshot)",
                         argument="out")
    dev = resolve_device(device)
    seed = int(seed)
    dataset_info, steps = _set_eval_batch(problem, data, seed=seed, eval_batch_size=int(eval_batch_size),
                                          batch_size=int(batch_size), steps_per_epoch=steps_per_epoch)
    state_file = train_state_path(out) if out is not None else None
    source = None if resume is False else (state_file if resume is True else Path(resume))
    if source is not None and resume is not True and not source.is_file():
        raise TrainError(f"training state not found: {source}", argument="resume")
    settings = _settings(problem, spec, data, lr=float(lr), seed=seed, batch_size=int(batch_size), steps=steps,
                         device=dev)
    state = _read_state(source, settings, int(epochs)) if source is not None and source.is_file() else None
    done = int(state["epoch"]) if state is not None else 0
    missing = [e for e in save_at if e <= done and not epoch_path(out, e).is_file()]
    if missing:
        raise TrainError(f"the snapshot after epoch(s) {missing} is missing and the training state is at epoch "
                         f"{done}: it cannot be made again; train from the start", argument="save_at")
    if out is not None:  # a full disk is refused before the first step, not after the last epoch line
        ensure_room(out, (1 + len(save_at)) * snapshot_bytes(problem, int(epochs)) + 4 * snapshot_bytes(problem))
    problem.to(dev)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in problem.params.items()}
    loop = _Loop(problem, est, params, torch.optim.Adam(list(params.values()), lr=float(lr)),
                 key=stream_key(seed, f"train:{spec}"), seed=seed, device=dev, lr=float(lr))
    batches = _Batches(problem, data, int(batch_size), loop.g_order, loop.g_binarize, dev)
    if state is None:
        provenance = _start_provenance(spec, data, lr=float(lr), seed=seed, batch_size=int(batch_size), steps=steps,
                                       device=dev, dtype=loop.dtype)
        provenance["eval_history"].append(_eval_entry(problem, params, 0, loop.g_eval_noise))
    else:
        loop.load(state["loop"])
        batches.load(state["batches"])
        provenance = _copy(state["provenance"])
        provenance.setdefault("resumed_after", []).append(done)
    start = time.perf_counter() - float(provenance.get("wall_time_s", 0.0))
    for epoch in range(done + 1, int(epochs) + 1):
        t0 = time.perf_counter()
        mean = loop.epoch(epoch, int(epochs), steps, batches, progress)
        # epoch end: history, evaluation, optional snapshot
        provenance["epoch_times_s"].append(time.perf_counter() - t0)
        provenance["loss_history"].append(mean)
        ev = _eval_entry(problem, params, epoch, loop.g_eval_noise)
        provenance["eval_history"].append(ev)
        provenance["epochs"] = epoch
        provenance["wall_time_s"] = time.perf_counter() - start
        if progress is not None:
            progress(TrainProgress(epoch, int(epochs), steps, steps, mean, True, ev["loss"]))
        if epoch in save_at:  # save_snapshot copies params and batch to the CPU itself
            problem.params = {k: v.detach().clone() for k, v in params.items()}
            save_snapshot(epoch_path(out, epoch), problem, dataset=dataset_info, provenance=_copy(provenance))
        if state_file is not None:
            _write_state(state_file, {"epoch": epoch, "settings": settings, "loop": loop.state(),
                                      "batches": batches.state(), "provenance": _copy(provenance)})
    problem.params = {k: v.detach().clone() for k, v in params.items()}
    problem.to("cpu")
    if out is not None:
        return save_snapshot(out, problem, dataset=dataset_info, provenance=_copy(provenance))
    return snapshot_of(problem, dataset=dataset_info, provenance=_copy(provenance))


def _settings(problem: Problem, spec: EstimatorSpec, data: Any, *, lr: float, seed: int, batch_size: int,
              steps: int, device: torch.device) -> dict[str, Any]:
    """What a training state must share with the training that resumes it: the untrained model (its
    content hash: kind, options, initial parameters, evaluation batch) and every setting of the steps."""
    from biasvar.snapshot import content_hash

    return {"model": content_hash(problem), "estimator": str(spec), "lr": lr, "seed": seed,
            "batch_size": batch_size, "steps_per_epoch": steps, "data": getattr(data, "name", None),
            "device": device.type, "dtype": str(next(iter(problem.params.values())).dtype).replace("torch.", "")}


def _read_state(path: Path, settings: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """A training state file, checked against this training's settings (one-line errors)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        theirs, done = dict(state["settings"]), int(state["epoch"])
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file is one line
        raise StateError(f"cannot read the training state {path} ({type(e).__name__}); delete it to start "
                         "over") from None
    differ = [k for k in settings if theirs.get(k) != settings[k]]
    if differ:
        what = ", ".join(f"{k} {theirs.get(k)!r} (now {settings[k]!r})" for k in differ if k != "model")
        if "model" in differ:
            what = ("the model (its options, seed or evaluation batch)" + (", " if what else "")) + what
        raise StateError(f"the training state {path} is of other settings: {what}")
    if done > epochs:
        raise TrainError(f"the training state {path} is at epoch {done}, past the {epochs} epochs asked for",
                         argument="epochs")
    return state


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    from biasvar.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def snapshot_bytes(problem: Problem, epochs: int = 0) -> int:
    """About the size of ``problem``'s snapshot file after ``epochs`` epochs: its tensors (parameters,
    evaluation batch, buffers) and a generous allowance for the pickle and the provenance (which
    keeps a few numbers per epoch)."""
    tensors = [*problem.params.values(), problem.batch, *(getattr(problem, "buffers", None) or {}).values()]
    return sum(int(t.numel()) * t.element_size() for t in tensors if isinstance(t, Tensor)) + 64 * 1024 \
        + 256 * int(epochs)


def _set_eval_batch(problem: Problem, data: Any, *, seed: int, eval_batch_size: int, batch_size: int,
                    steps_per_epoch: int | None) -> tuple[dict[str, Any] | None, int]:
    """Set ``problem.batch`` to ``eval_batch_size`` training points chosen by ``seed``.

    Returns:
        ``(dataset_info, steps)``: what the snapshot records about the data (None without data),
        and the steps per epoch (a full pass over the data, or :data:`STEPS_WITHOUT_DATA`).
    """
    if data is None:
        return None, STEPS_WITHOUT_DATA if steps_per_epoch is None else int(steps_per_epoch)
    N = int(data.images.shape[0])
    if N < 1:
        raise TrainError(f"dataset {getattr(data, 'name', '?')} is empty")
    g_eval = torch.Generator().manual_seed(seed)
    indices = torch.randperm(N, generator=g_eval)[: min(eval_batch_size, N)]
    problem.batch = problem.make_batch(data, indices, g_eval)
    info = {"name": getattr(data, "name", None), "split": getattr(data, "split", None),
            "indices": [int(i) for i in indices], "seed": seed, "batch_size": int(indices.numel()), "size": N}
    return info, math.ceil(N / batch_size) if steps_per_epoch is None else int(steps_per_epoch)


def _start_provenance(spec: EstimatorSpec, data: Any, *, lr: float, seed: int, batch_size: int, steps: int,
                      device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    return {
        "estimator": str(spec),
        "epochs": 0,
        "lr": lr,
        "seed": seed,
        "batch_size": batch_size,
        "steps_per_epoch": steps,
        "optimizer": "adam",
        "data": getattr(data, "name", None) if data is not None else None,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "biasvar_version": biasvar.__version__,
        "torch_version": str(torch.__version__),
        "host": platform.node(),
        "loss_history": [],
        "eval_history": [],
        "epoch_times_s": [],
        **({"estimator_source": plugins.source_record(spec.name)} if spec.plugin else {}),  # the user's code
    }


class _Loop:
    """The optimisation state of :func:`train`: parameters, Adam, the noise key and the generators
    (minibatch order, binarization, evaluation noise, honest-loss samples), each seeded from ``seed``."""

    def __init__(self, problem: Problem, est: Any, params: dict[str, Tensor], opt: torch.optim.Optimizer, *,
                 key: Any, seed: int, device: torch.device, lr: float) -> None:
        self.problem, self.est, self.params, self.opt, self.key, self.device, self.lr = (
            problem, est, params, opt, key, device, lr)
        self.dtype = next(iter(params.values())).dtype
        self.g_order = torch.Generator().manual_seed(_derived_seed(seed, 1))
        self.g_binarize = torch.Generator().manual_seed(_derived_seed(seed, 2))
        self.g_eval_noise = torch.Generator(device=device).manual_seed(_derived_seed(seed, 3))
        self.g_plain = torch.Generator(device=device).manual_seed(_derived_seed(seed, 4))
        self.honest_forward = isinstance(est, PlugIn) and not est.relaxed  # its forward value is the honest loss
        self.step_global = 0

    def state(self) -> dict[str, Any]:
        """Everything the next step depends on (on the CPU): parameters, Adam, the step counter, the
        generators."""
        cpu = lambda v: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else v  # noqa: E731
        opt = self.opt.state_dict()
        return {"params": {k: cpu(v) for k, v in self.params.items()},
                "opt": {"state": {i: {k: cpu(v) for k, v in d.items()} for i, d in opt["state"].items()},
                        "param_groups": opt["param_groups"]},
                "step": self.step_global,
                "generators": {k: getattr(self, k).get_state() for k in self._GENERATORS}}

    def load(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(state["params"][k])
        self.opt.load_state_dict(state["opt"])
        self.step_global = int(state["step"])
        for k in self._GENERATORS:
            getattr(self, k).set_state(state["generators"][k])

    _GENERATORS = ("g_order", "g_binarize", "g_eval_noise", "g_plain")

    def step(self, x: Tensor, epoch: int, step: int) -> float:
        """One Adam step on minibatch ``x``; returns the honest loss (TrainError when it diverges)."""
        noise = _step_noise(self.problem, self.est, self.key, self.step_global, x.shape[0], self.dtype, self.device)
        loss = draw_loss(self.problem, self.est, self.params, noise, x=x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.honest_forward:
            honest = loss.detach()
        else:
            with torch.no_grad():
                honest = plain_loss(self.problem, self.params, x, generator=self.g_plain).mean()
        value = float(honest)
        if not math.isfinite(value) or not math.isfinite(float(loss.detach())):
            raise TrainError(f"training diverged at epoch {epoch}, step {step}: loss {value}; "
                             f"try a smaller learning rate (now {self.lr})", argument="lr")
        self.opt.step()
        self.step_global += 1
        return value

    def epoch(self, epoch: int, epochs: int, steps: int, batches: _Batches,
              progress: Callable[[TrainProgress], None] | None) -> float:
        """``steps`` steps; returns the mean honest loss of the epoch."""
        total, count = 0.0, 0
        for step in range(1, steps + 1):
            x = next(batches)
            value = self.step(x, epoch, step)
            total += value * x.shape[0]
            count += x.shape[0]
            if progress is not None:
                progress(TrainProgress(epoch, epochs, step, steps, total / count))
        return total / count


def _copy(provenance: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in provenance.items()}
