"""Optuna: samplers, the searcher Ray Tune drives, the Optuna record, parameter importances."""


def __getattr__(name: str):
    """``mmc_sweep.study.search.StudySearcher`` (and its keys): the module this package replaced, as
    studies interrupted before the regrouping name it in their pickled Ray Tune state."""
    if name in ("StudySearcher", "REUSE_KEY", "ROWS_KEY"):
        from mmc_sweep.study.search import searcher

        return getattr(searcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
