"""Training steps and path points never make the host wait for the device, and the reads that remain
are counted exactly (docs/studies.md states these counts).

A trial sharing its GPU with others loses most of the sharing when it reads a value back every step:
the host then waits for the GPU to drain, its neighbours' queued work included. On CPU the same code
paths are watched at two levels:

* torch's dispatcher (:class:`HostReads`): a scalar read (``float()``, ``.item()``, ``if t.any()``) is
  ``_local_scalar_dense``, and a boolean-mask index needs the mask's count on the host;
* torch's Python API (:class:`PythonReads`): ``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``,
  ``float()``, ``int()``, ``bool()``, the reads that bypass the dispatcher. Values drawn on the host
  from a CPU generator (the barrier's t, QMC's lr scale) never were on the device; reading them is
  not a wait, and they are told apart by where they came from.

A host-to-device copy from pageable memory also waits, but on a CPU run it cannot be told from any
other copy: the GPU twin of these tests (`tests/test_gpu.py`) turns CUDA's own sync checks on.
"""
from __future__ import annotations

import collections

import pytest
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from mmc_sweep.config import AlignSpec, BNResetSpec, FinetuneSpec, PathSpec, QMCSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.finetune import finetune
from mmc_sweep.metrics import view_metrics
from mmc_sweep.models import create_model
from mmc_sweep.paths import PairContext, measure_pair
from mmc_sweep.paths.evaluate import evaluate_path


class HostReads(TorchDispatchMode):
    """Counts the operations that need a device value on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("_local_scalar_dense", "is_nonzero", "nonzero", "masked_select"):
            self.seen[name] += 1
        if name == "index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]):
            self.seen["bool_index"] += 1
        return func(*args, **(kwargs or {}))


class PythonReads(TorchFunctionMode):
    """Counts the Python-level reads of tensor values to the host, except of values drawn on the host
    (a CPU generator's draws and what is computed from them alone)."""

    READS = {Tensor.item, Tensor.tolist, Tensor.cpu, Tensor.numpy, Tensor.__float__, Tensor.__int__, Tensor.__bool__}
    DRAWS = {torch.rand, torch.randn, torch.randint, torch.randperm}

    def __init__(self) -> None:
        super().__init__()
        self.seen: collections.Counter[str] = collections.Counter()
        self._drawn: dict[int, Tensor] = {}  # id -> tensor (kept alive: ids are not reused meanwhile)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = [a for a in args if isinstance(a, Tensor)]
        drawn = (func in self.DRAWS and isinstance(kwargs.get("generator"), torch.Generator)) or (
            bool(tensors) and all(id(t) in self._drawn for t in tensors))
        if drawn and isinstance(out, Tensor):
            self._drawn[id(out)] = out
        elif func in self.READS and not drawn:
            self.seen[func.__name__] += 1
        return out


def _images(n: int, seed: int, classes: int = 4) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand(n, 3, 16, 16, generator=gen), torch.randint(classes, (n,), generator=gen))


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=4, width=8).eval()


@pytest.mark.parametrize("update", ["joint", "alternating"])
@pytest.mark.parametrize("form", ["norm_then_mean", "paper"])
def test_a_cbft_epoch_reads_one_value_back_whatever_its_number_of_steps(update, form):
    # t at the midpoint: the other t draws are host-side numbers from a CPU generator, which the
    # dispatcher cannot tell from a device read here
    spec = FinetuneSpec(method="cbft", epochs=2, n_clean=64, batch_size=16, cue_batch_size=16, lambda_barrier=1.0,
                        lambda_invariance=1.0, warmup_epochs=0, t_distribution="midpoint", update=update,
                        invariance_form=form)
    with HostReads() as reads:
        finetune(_model(0), _images(64, 1), spec, cue_data=_images(40, 2))  # 4 steps an epoch
    assert dict(reads.seen) == {"_local_scalar_dense": 2}  # each epoch's mean loss, once


def test_a_path_point_is_measured_without_reading_values_back_one_by_one():
    views = {v: _images(24, seed) for seed, v in enumerate(("clean", "cue", "rand_cue", "rand_img"))}
    spec = PathSpec(alphas=3, views=tuple(views), bn_reset=BNResetSpec(mode="cumulative", batches=3, batch_size=8))
    with HostReads() as reads:
        rows = evaluate_path(_model(0), _model(1), views, spec, bn_data={"clean": _images(32, 9)})
        view_metrics(_model(0), views)
    # the metrics of a point leave the device in one transfer (tolist), which is no scalar read
    assert dict(reads.seen) == {} and len(rows) == 12


def test_a_cbft_epoch_with_the_default_t_draws_reads_one_device_value():
    spec = FinetuneSpec(method="cbft", epochs=2, n_clean=64, batch_size=16, cue_batch_size=16, lambda_barrier=1.0,
                        lambda_invariance=1.0, warmup_epochs=0)
    assert spec.t_distribution == "beta"  # the default: a t drawn on the host every step
    with PythonReads() as python, HostReads() as dispatched:
        finetune(_model(0), _images(64, 1), spec, cue_data=_images(40, 2))  # 4 steps an epoch
    assert dict(python.seen) == {"__float__": 2}  # each epoch's mean loss, once; the 8 t draws are host values
    assert set(dispatched.seen) == {"_local_scalar_dense"}  # no mask index, no nonzero


# small_cnn: three convolution blocks, so LMCP matches three permutation groups, one score matrix each
@pytest.mark.parametrize("kind, expected", [("linear", {"tolist": 3}),
                                            ("lmcp", {"tolist": 3, "cpu": 3, "numpy": 3}),
                                            ("qmc", {"tolist": 3, "__float__": 2})])
def test_each_path_kind_reads_back_once_per_point_and_per_matching_or_midpoint_epoch(kind, expected):
    """3 points: one transfer each. LMCP: one score matrix per group, before the path. QMC: the
    midpoint's 2 training epochs, one mean loss each (its per-step lr scales are host draws)."""
    views = {v: _images(24, seed) for seed, v in enumerate(("clean", "cue", "rand_cue", "rand_img"))}
    spec = PathSpec(alphas=3, views=tuple(views), kinds=(kind,), qmc=QMCSpec(epochs=2, batch_size=16),
                    align=AlignSpec(batches=1, batch_size=16),
                    bn_reset=BNResetSpec(mode="cumulative", batches=3, batch_size=8))
    with PythonReads() as python, HostReads() as dispatched:
        measure_pair(_model(0), _model(1), views, PairContext(spec, {"clean": _images(32, 9), "cue": _images(32, 8)}))
    assert dict(python.seen) == expected
    assert set(dispatched.seen) <= {"_local_scalar_dense"}  # only QMC's host draws and epoch losses
