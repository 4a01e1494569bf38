"""Analysis of study results: reads only ``study.yaml`` and the Parquet datasets (no Ray).

Modules, one job each:

- ``columns``: names of the barrier columns (``<type>[_<kind>]_<path>_<view>``) and their labels;
- ``load``: read a study folder (:func:`load_study`, :func:`read_paths`);
- ``spec``: what the analysis takes from ``study.yaml`` (objectives, search space, path kinds and
  views, expected rows);
- ``tables``: the summary and the paper's method table (:func:`method_table`, :func:`best_rule`);
- ``connectivity``: every barrier of every path kind, path and view (:func:`connectivity_table`);
- ``pareto``: the Pareto front over the objectives and ``n_clean`` (:func:`pareto_front`);
- ``importance``: Optuna parameter importances (the only Optuna user, imported lazily);
- ``report``: the sections as JSON-able records (:func:`analyze_report`, :func:`compare_report`);
- ``render``: rich tables, Markdown, CSV and JSON output;
- ``figures`` / ``plots``: PNG figures (matplotlib, headless; ``figures.connectivity_figure`` draws
  one pair's paths of every kind) and the choice of trials and pairs to draw;
- ``synthetic``: a made-up study folder for benchmarks, docs and demos;
- ``cli``: the ``analyze``, ``plot`` and ``compare`` subcommands.
"""
from mmc_sweep.analysis.connectivity import connectivity_table
from mmc_sweep.analysis.load import Study, load_study, read_paths
from mmc_sweep.analysis.pareto import pareto_front
from mmc_sweep.analysis.report import analyze_report, compare_report
from mmc_sweep.analysis.tables import best_rule, method_table, summary

__all__ = ["Study", "analyze_report", "best_rule", "compare_report", "connectivity_table", "load_study",
           "method_table", "pareto_front", "read_paths", "summary"]
