"""The study harness: a study file in, Optuna proposing, Ray Tune running trials, Parquet out.

The only package of mmc_sweep that imports Ray or Optuna. Its folders follow the path a study takes,
each a layer that imports only from the layers below it (``LAYERS``, bottom first;
``tests/test_layout.py`` checks it and that no two modules import each other, even lazily):

* ``cli``: the ``run``, ``resume``, ``compact`` and ``status`` subcommands (top);
* ``run/``: running it on Ray: connect, the three stages as Tune experiments, the trials, the
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

LAYERS = ("faults", "storage", "definition", "search", "run", "cli")  # bottom first: imports go leftwards

import importlib
import importlib.abc
import importlib.util
import sys

# Where each module of the flat package that studies interrupted before the regrouping name in their
# pickled Ray Tune state (the searcher, the callbacks, the specs and the store they hold) lives now:
# `resume` of such a study unpickles them by their old names. Imported only when asked for.
MOVED = {f"{__name__}.{old}": f"{__name__}.{new}" for old, new in {
    "store": "storage.store", "results": "storage.results", "compaction": "storage.compaction",
    "artifacts": "storage.artifacts", "lock": "storage.lock", "spec": "definition.spec",
    "overrides": "definition.overrides", "preflight": "definition.preflight", "optuna_record": "search.record",
    "importance": "search.importance", "runner": "run.runner", "stages": "run.stages", "trials": "run.trials",
    "callbacks": "run.callbacks", "interrupt": "run.interrupt", "report": "run.report"}.items()}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module under its old name as the module at its new place (the same object)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import machinery sets the alias's spec on the module next
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


sys.meta_path.append(_MovedModules())
