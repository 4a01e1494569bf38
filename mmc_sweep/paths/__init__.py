"""Paths between two models and what is measured along them, one job per module:

- ``interpolate``: points of the straight line and of the quadratic Bezier curve (state dicts);
- ``bn_reset``: BatchNorm re-estimation of a point, by a recorded policy;
- ``align``: LMCP's matching of B's hidden units to A's (activation or weight matching);
- ``midpoint``: QMC's midpoint training, and where trained midpoints are stored;
- ``evaluate``: loss, accuracy and invariance metrics at every point on every view (endpoints measured once);
- ``barriers``: barrier heights of a path (named by :func:`mmc_sweep.config.barrier_metric`);
- ``kinds``: the registry of path kinds (``linear``, ``lmcp``, ``qmc``) and :func:`measure_pair`;
- ``layers``: layer-wise connectivity, each kind's path walked by one layer at a time (the rest kept at A).
"""
from mmc_sweep.paths.align import align, find_permutations, match_activations, match_weights
from mmc_sweep.config import BARRIER_TYPES, barrier_metric  # the names of what barriers() measures
from mmc_sweep.paths.barriers import barriers
from mmc_sweep.paths.bn_reset import StreamedBatches, bn_batches, fixed_batches, reset_bn
from mmc_sweep.paths.evaluate import EndpointRows, evaluate_curve, evaluate_path
from mmc_sweep.paths.interpolate import alpha_grid, bezier_curve, bezier_state, interpolate_state, linear_curve
from mmc_sweep.paths.kinds import PATH_KINDS, PairContext, kind_names, measure_pair, path_kind, register_kind
from mmc_sweep.paths.layers import layer_barriers, layer_curve, measure_layers, model_layers
from mmc_sweep.paths.midpoint import FolderMidpoints, MidpointStore, init_midpoint, train_midpoint

__all__ = [
    "BARRIER_TYPES", "EndpointRows", "FolderMidpoints", "MidpointStore", "PATH_KINDS", "PairContext", "StreamedBatches", "align",
    "alpha_grid", "barrier_metric", "barriers", "bezier_curve", "bezier_state", "bn_batches", "evaluate_curve", "evaluate_path",
    "find_permutations", "fixed_batches", "init_midpoint", "interpolate_state", "kind_names", "layer_barriers", "layer_curve",
    "linear_curve", "match_activations", "match_weights", "measure_layers", "measure_pair", "model_layers", "path_kind",
    "register_kind", "reset_bn", "train_midpoint",
]
