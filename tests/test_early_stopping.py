"""search.scheduler: asha stops hopeless trials: `pruned` rows with the epochs they trained, PRUNED in Optuna."""
from __future__ import annotations

import json

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from drivers import assert_journal_matches_parquet, assert_told_once, table
from mmc_sweep.cli import main
from study_files import search, write_study

EPOCHS = 4


def test_asha_prunes_trials_and_tells_optuna(ray_cluster, tmp_path, seeded_store, capsys):
    from mmc_sweep.study.definition.options import RunOptions
    from mmc_sweep.study.definition.spec import load_study
    from mmc_sweep.study.run.runner import run

    asha = {"metric": "acc_clean", "mode": "max", "grace_period": 1, "reduction_factor": 2}
    spec = load_study(write_study(tmp_path, "asha", baselines=[], finetune={"epochs": EPOCHS},
                                  search=search(num_samples=6, max_concurrent=1, scheduler="asha", asha=asha)))
    store = seeded_store
    assert run(spec, RunOptions(storage=str(store), address=ray_cluster.address)).exit_code == 0
    folder = store / "asha"
    rows = [r for r in table(folder, "trials") if r["role"] == "search"]
    history = table(folder, "history")
    trained = {r["trial_id"]: sorted(h["epoch"] for h in history if h["trial_id"] == r["trial_id"]) for r in rows}
    pruned = [r for r in rows if r["status"] == "pruned"]
    completed = [r for r in rows if r["status"] == "completed"]
    assert len(rows) == 6 and pruned and completed, [(r["status"], trained[r["trial_id"]]) for r in rows]
    for r in pruned:  # stopped at a rung (1, 2 or 4 epochs) before its final measurement; its settings recorded
        assert trained[r["trial_id"]] == list(range(1, len(trained[r["trial_id"]]) + 1))
        assert len(trained[r["trial_id"]]) in (1, 2, 4) and r["param_lr"] is not None and r["acc_clean"] is None
    assert any(len(trained[r["trial_id"]]) < EPOCHS for r in pruned)  # compute was saved
    for r in completed:
        assert trained[r["trial_id"]] == list(range(1, EPOCHS + 1))
    trials = optuna.load_study(study_name="asha", storage=JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))).trials
    assert_journal_matches_parquet(trials, table(folder, "trials"), ["acc_rand_cue", "cue_reliance"])
    assert_told_once(folder / "optuna.journal", table(folder, "trials"))  # a pruned trial: PRUNED, once
    capsys.readouterr()
    assert main(["status", str(folder), "--format", "json"]) == 0  # status counts the pruned trials as such
    search_part = next(p for p in json.loads(capsys.readouterr().out)["parts"] if p["part"] == "search")
    assert (search_part["completed"], search_part["pruned"], search_part["missing"]) == (len(completed), len(pruned), 0)
