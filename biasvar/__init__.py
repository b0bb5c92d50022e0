"""biasvar: measure the bias and variance of gradient estimators for discrete random variables.

The public API for measuring your own model (stable; imported lazily so ``import biasvar`` stays light):

* :class:`Problem` — what the engine measures: ordered named ``params``, a fixed evaluation ``batch``,
  its stochastic sites (``node_shapes``) and ``forward(params, x, sample) -> losses [B]``;
* :class:`UserProblem` — a problem from a pure function ``forward(params, x, sample)``;
* :func:`problem_from_module` — a problem from an ``nn.Module`` whose ``forward(x, sample)`` returns
  per-data-point losses;
* :class:`Site` — a site's logits shape per data point, categorical ``[..., K]`` or binary ``[..., 1]``;
* :func:`make_problem` — a problem from a built-in name or a factory ``"module:function"``;
* :func:`save_snapshot`, :func:`load_snapshot`, :func:`snapshot_of` — snapshots the CLI measures.

And for measuring your own *estimator* (see :mod:`biasvar.plugins`):

* :class:`UserEstimator` — what a plug-in factory returns: ``fn(logits, noise) -> y``, the noise it
  asks for, its cost in forward passes, whether it claims to be unbiased;
* :func:`register_estimator` — name a factory in this process (or name it by its import path,
  ``mypkg.est:make(t=0.5)`` / ``path/est.py:make(t=0.5)``, wherever a spec goes).
"""

__version__ = "0.1.0"

_API = {
    "Problem": "biasvar.problems.base",
    "SampleFn": "biasvar.problems.base",
    "UserProblem": "biasvar.problems.user",
    "ModuleProblem": "biasvar.problems.user",
    "Site": "biasvar.problems.user",
    "problem_from_module": "biasvar.problems.user",
    "load_state": "biasvar.problems.user",
    "make_problem": "biasvar.problems.registry",
    "save_snapshot": "biasvar.snapshot",
    "load_snapshot": "biasvar.snapshot",
    "snapshot_of": "biasvar.snapshot",
    "UserEstimator": "biasvar.plugins",
    "register_estimator": "biasvar.estimators.plugin",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'biasvar' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
