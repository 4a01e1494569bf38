"""Optuna: samplers, the searcher Ray Tune drives, the Optuna record, parameter importances."""
