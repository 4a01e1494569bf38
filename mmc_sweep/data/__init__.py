"""Data as tensors: the embedded shapes set, local CIFAR and FashionMNIST, cues, cue tasks and counterfactual views."""
from .cifar import check_data_root, cifar_num_classes, load_cifar
from .cues import CUES, BoxCue, Cue, DominoesCue, NoCue, make_cue, register_cue
from .dominoes import FashionDominoesCue, pair_by_class
from .fashion import DataRootError, load_fashion
from .imageset import ImageSet
from .shapes import generate_shapes
from .task import CueTask, build_task, derive_seed
from .views import cue_reliance, make_views, view_recipes

__all__ = [
    "CUES", "BoxCue", "Cue", "CueTask", "DataRootError", "DominoesCue", "FashionDominoesCue", "ImageSet", "NoCue",
    "build_task", "check_data_root", "cifar_num_classes", "cue_reliance", "derive_seed", "generate_shapes", "load_cifar",
    "load_fashion", "make_cue", "make_views", "pair_by_class", "register_cue", "view_recipes",
]
