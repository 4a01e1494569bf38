"""A study folder's own study file, ``<storage>/<name>/study.yaml``: the resolved spec, written once.

A new run of a name that exists must have the same spec (then it resumes that study), and
``resume`` reads the spec back from the folder. No Ray here: ``preflight`` runs these checks too.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from mmc_sweep.errors import InputError
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import StudySpec, dump_study, load_study, parse_study
from mmc_sweep.study.storage.store import Store, split_query

STUDY_FILE = "study.yaml"


def check_study_name(store: Store, spec: StudySpec) -> None:
    """An existing study under this name must have the same spec (then the run resumes it)."""
    if not store.exists(spec.name, STUDY_FILE):
        return
    existing = parse_study(yaml.safe_load(store.read_bytes(spec.name, STUDY_FILE)), store.uri_of(spec.name, STUDY_FILE),
                           stored=True)
    if existing.hash != spec.hash:
        raise InputError(
            f"{store.uri_of(spec.name)}: a study named {spec.name!r} exists with another spec "
            f"(hash {existing.hash} vs {spec.hash}); pick another --name, or `resume` that study"
        )


def prepare_study_folder(store: Store, spec: StudySpec) -> None:
    """Write ``study.yaml`` (the resolved spec) unless the study already has it."""
    check_study_name(store, spec)
    if not store.exists(spec.name, STUDY_FILE):
        store.write_bytes(dump_study(spec).encode(), spec.name, STUDY_FILE)


def load_resumable(study_dir: str, filesystem=None) -> tuple[StudySpec, RunOptions]:
    """The spec and storage of an existing study folder (``resume``): a local path, a URI, or a path
    on ``filesystem`` (a ``pyarrow.fs.FileSystem``)."""
    # s3://bucket/studies/NAME?endpoint_override=…: the query belongs to the storage (a local path has none)
    folder, query = split_query(study_dir) if "://" in study_dir else (study_dir.rstrip("/"), "")
    if "://" in folder or filesystem is not None:
        parent, name = folder.rsplit("/", 1) if "/" in folder else ("", folder)
        parent += query
        store = Store.open(parent, filesystem)
        if not store.exists(name, STUDY_FILE):
            raise InputError(f"{study_dir}: not a study folder (no {STUDY_FILE})")
        spec = parse_study(yaml.safe_load(store.read_bytes(name, STUDY_FILE)), f"{study_dir}/{STUDY_FILE}", stored=True)
        return spec, RunOptions(storage=parent, filesystem=filesystem)
    path = Path(folder).expanduser().resolve()
    if not (path / STUDY_FILE).is_file():
        raise InputError(f"{study_dir}: not a study folder (no {STUDY_FILE})")
    spec = load_study(path / STUDY_FILE, stored=True)  # a study from before a setting keeps its old meaning
    if spec.name != path.name:
        raise InputError(f"{path / STUDY_FILE}: name {spec.name!r} does not match the folder name {path.name!r}")
    return spec, RunOptions(storage=str(path.parent))
