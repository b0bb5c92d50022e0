"""Coverage of the b2 intervals on real gradients, against the true b2.

A small categorical VAE, trained briefly on MNIST-B, is small enough to enumerate per data point,
so the exact gradient ``g*`` of its expected loss and the expectation ``E[J]`` of every tested
estimator are known (:func:`biasvar.problems.enumeration.enumerate_expectation`: exact for x-only
estimators and rf, by conditional Monte Carlo with a stated error for gs-st / gr-mc). The true
per-parameter squared bias that Eq. 16 estimates is then ``||E[J] - g*||^2 / d`` (the reference
rf(M=4) is unbiased, so the truth is the same against ``exact`` and against ``rf(M=4)``).

For every pair ``i`` the study draws, through the engine and its counter-based noise, one run of
each tested estimator (seed ``i``) and one reference run of rf(M=4) (seed ``pairs + i``, so that
rf tested against rf is a pair of independent runs), forms the engine's block statistics at each
block count, and computes each interval method on the pair's Gram matrices with the same code a
report uses. A *setting* is (tested estimator, reference, block count); within a setting the
pairs are independent (runs are reused across settings, so settings are not independent of
each other). Coverage is the fraction of pairs whose interval holds the true b2, with a Wilson
95% interval; width is the mean interval width.
One job per module:

* :mod:`~biasvar.studies.coverage.config` — what the study measures (:class:`StudyConfig`) and its
  settings (:class:`Setting`, :func:`settings_of`);
* :mod:`~biasvar.studies.coverage.truth` — the trained model and the true b2 of every estimator;
* :mod:`~biasvar.studies.coverage.pairs` — runs in memory: engine draws in blocks, and synthetic
  Gaussian pairs with a known truth;
* :mod:`~biasvar.studies.coverage.grams` — a pair's Gram matrices, the intervals computed on them
  by the analysis code, and :class:`GramStore` (every pair's Gram matrices, to re-evaluate methods);
* :mod:`~biasvar.studies.coverage.study` — :func:`run_study`: every pair drawn and analysed;
* :mod:`~biasvar.studies.coverage.summary` — coverage with Wilson intervals, the recommended method;
* :mod:`~biasvar.studies.coverage.outputs` — ``coverage.json``, ``README.md``, ``pairs.npz`` and back.
"""

from biasvar.studies.coverage.config import DEFAULT_ESTIMATORS, MORE_BLOCKS, Setting, StudyConfig, settings_of
from biasvar.studies.coverage.grams import GramStore, gram_of, intervals_from_gram, intervals_of, last_layer
from biasvar.studies.coverage.outputs import load_raw, to_json, to_markdown, write_outputs
from biasvar.studies.coverage.pairs import MemoryRun, draw_runs, gaussian_problem, memory_run
from biasvar.studies.coverage.study import analyse_pair, run_study
from biasvar.studies.coverage.summary import recommend, summarize, wilson
from biasvar.studies.coverage.truth import Truth, make_problem, true_b2s

__all__ = ["DEFAULT_ESTIMATORS", "MORE_BLOCKS", "GramStore", "MemoryRun", "Setting", "StudyConfig", "Truth",
           "analyse_pair", "draw_runs", "gaussian_problem", "gram_of", "intervals_from_gram", "intervals_of",
           "last_layer", "load_raw", "make_problem", "memory_run", "recommend", "run_study", "settings_of",
           "summarize", "to_json", "to_markdown", "true_b2s", "wilson", "write_outputs"]
