"""The study harness: a study file in, Optuna proposing, Ray Tune running trials, Parquet out.

The only package of mmc_sweep that imports Ray or Optuna. Its folders follow the path a study takes,
each a layer that imports only from the layers below it (``LAYERS``, bottom first;
``tests/test_layout.py`` checks it and that no two modules import each other, even lazily):

* ``cli``: the ``run``, ``resume``, ``pairs``, ``compact`` and ``status`` subcommands (top);
* ``pairs/``: ``run_study.py pairs``: the connectivity matrix among a study's models, on the run layer's
  workers and Ray start-up;
* ``run/``: running it on Ray: connect, the study's one Tune experiment and the order of its trials, the trials, the
  driver's callbacks, Ctrl-C, the end-of-run report;
* ``search/``: Optuna: samplers, the searcher Tune drives, the Optuna record and its reconciliation,
  parameter importances;
* ``definition/``: the study file and its checks: the spec, ``--set``/``--smoke``, the run options,
  preflight, the study folder's own ``study.yaml``;
* ``storage/``: where files live and how they are written: the store, Parquet results and their
  compaction, content-addressed artifacts, the study lock;
* ``faults``: every test-only fault point and its one switch (bottom: read wherever a fault is injected).

Outside this package, only ``mmc_sweep.cli`` imports it (``study.cli``), and the analysis imports
``study.search.importance`` lazily, inside the function that computes importances.
"""

LAYERS = ("faults", "storage", "definition", "search", "run", "pairs", "cli")  # bottom first: imports go leftwards
