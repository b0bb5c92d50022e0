"""Studies and tools built on the core (above it, never imported by it).

* :mod:`~biasvar.studies.demo` — ``biasvar demo``: every estimator on the toy problems, exact reference;
* :mod:`~biasvar.studies.reproduce` — ``biasvar reproduce``: the paper's protocol end to end;
* :mod:`~biasvar.studies.quantstudy` — the Fig. B.5 study of one quantized unit;
* :mod:`~biasvar.studies.bench` — ``biasvar bench``: draws/s of the vectorized engine against a loop;
* :mod:`~biasvar.studies.coverage` — the coverage study of the interval methods (true b2 known);
* :mod:`~biasvar.studies.faults` — fault injection into run files (``python -m biasvar.studies.faults``).

The core (spec, estimators, problems, rng, engine, store, stats, report) imports nothing from here.
"""
