"""A study driver on a pyarrow.fs file system that is not the local one (a SubTreeFileSystem over a
folder standing in for a bucket), as a fresh process: `python uri_driver.py BUCKET STUDY_FILE ADDRESS`
runs the study with the storage root `studies` in the bucket."""
import sys
from pathlib import Path

import pyarrow.fs as pafs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmc_sweep.study.definition.options import RunOptions  # noqa: E402
from mmc_sweep.study.definition.spec import load_study  # noqa: E402
from mmc_sweep.study.run.runner import run  # noqa: E402

bucket, study_file, address = sys.argv[1:4]
fs = pafs.SubTreeFileSystem(bucket, pafs.LocalFileSystem())
sys.exit(run(load_study(study_file), RunOptions(storage="studies", filesystem=fs, address=address)).exit_code)
