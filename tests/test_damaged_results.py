"""A damaged results file in a study (cut short, as a full disk or a bad copy leaves it): the readers
name it in one line and read the rest; what would build on the results refuses it (exit 2, one line)
and changes nothing."""
from __future__ import annotations

from analysis_fixtures import write_kinds_study
from mmc_sweep.cli import main
from study_files import file_digests


def test_a_damaged_results_file_is_named_in_one_line_and_never_built_on(tmp_path, capsys):
    study, other = write_kinds_study(tmp_path / "a"), write_kinds_study(tmp_path / "b", "other")
    damaged = study / "results" / "trials" / "cbft_2.parquet"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    before = file_digests(study)
    warning = f"warning: {damaged}: not a readable Parquet file; skipped (restore it, or move it out of the study)"
    # the readers: every other trial read, the damaged file named once
    plot = ["plot", str(study), "--out", str(tmp_path / "figures"), "--no-importance"]
    for argv in (["analyze", str(study), "--format", "json"], plot, ["compare", str(study), str(other), "--format", "json"]):
        assert main(argv) == 0, argv
        err = capsys.readouterr().err
        assert err.splitlines().count(warning) == 1 and "Traceback" not in err, (argv, err)
    assert '"unreadable_part_files": 1' in (main(["analyze", str(study), "--format", "json"]) == 0 and capsys.readouterr().out)
    # what builds on the results: refused before it reads or merges anything (resume: before Ray starts)
    for argv in (["status", str(study)], ["compact", str(study)], ["resume", str(study)]):
        assert main(argv) == 2, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {damaged}: not a readable Parquet file"), (argv, lines)
    assert file_digests(study) == before
