"""A study driver on a pyarrow.fs file system that is not the local one (a SubTreeFileSystem over a
folder standing in for a bucket), as a fresh process: `python uri_driver.py BUCKET run FILE ADDRESS`
or `python uri_driver.py BUCKET resume STUDY_NAME ADDRESS`."""
import sys
from pathlib import Path

import pyarrow.fs as pafs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmc_sweep.study.definition.folder import load_resumable  # noqa: E402
from mmc_sweep.study.definition.options import RunOptions  # noqa: E402
from mmc_sweep.study.definition.spec import load_study  # noqa: E402
from mmc_sweep.study.run.runner import run  # noqa: E402

bucket, mode, what, address = sys.argv[1:5]
fs = pafs.SubTreeFileSystem(bucket, pafs.LocalFileSystem())
if mode == "run":
    spec, options = load_study(what), RunOptions(storage="studies", filesystem=fs)
else:
    spec, options = load_resumable(f"studies/{what}", filesystem=fs)
options = RunOptions(storage=options.storage, filesystem=fs, address=address)
sys.exit(run(spec, options).exit_code)
