"""The README's cluster path for real: a head node from `ray start --head` with token authentication, a
tiny study submitted through the Ray job SDK, its Parquet results read back. Needs the `cluster` extra."""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from extras import require
from study_files import search, write_study

pytestmark = pytest.mark.slow  # a real head node of its own

require("ray.dashboard.optional_deps", reason="the job SDK and dashboard need: pip install -e '.[cluster]'")
from ray.job_submission import JobStatus, JobSubmissionClient  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VIEWS = ("clean", "cue", "rand_cue", "rand_img")


def _free_ports(n: int) -> list[int]:
    """n distinct ports free right now: explicit ports keep this head off any other Ray on the machine."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _processes_of(root: Path) -> list[int]:
    """Processes other than this one naming ``root`` in their command line or open files. Ray renames its
    workers and agents (``ray::IDLE``), which overwrites their command line and environment; the log files
    they keep open under the temp dir still tell."""
    prefix = f"{root}/"

    def names_root(proc: Path) -> bool:
        if prefix.encode() in (proc / "cmdline").read_bytes():
            return True
        for fd in (proc / "fd").iterdir():
            try:
                if os.readlink(fd).startswith(prefix):
                    return True
            except OSError:  # closed meanwhile
                pass
        return False

    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and names_root(proc):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def _stop(head: subprocess.Popen, root: Path) -> None:
    """End this head only. Never `ray stop` here: it kills every Ray process on the machine."""
    head.terminate()  # `ray start --block` drains its node and stops its processes (~2 s)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:  # what is left of its process group (SIGTERM to the whole group at once kills the GCS
        os.killpg(head.pid, signal.SIGKILL)  # first, and the drain then waits a minute for it)
    except ProcessLookupError:
        pass
    for pid in _processes_of(root):  # stragglers outside the group: workers, the job's driver
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone meanwhile
            pass
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def head():
    """A one-node cluster as the README starts it (token in ~/.ray/auth_token, RAY_AUTH_MODE=token), on free
    ports, in its own temp dir and HOME; yields (job API URL, auth header, a scratch folder, GCS port)."""
    # a short path: Ray's unix sockets live under its temp dir, and a socket's path must stay under 108 bytes
    root = Path(tempfile.mkdtemp(prefix="mmc-head-", dir="/tmp"))
    token = secrets.token_hex(32)
    (root / "home" / ".ray").mkdir(parents=True)
    (root / "home" / ".ray" / "auth_token").write_text(token)  # what `ray get-auth-token --generate` writes
    # a clean environment: nothing of the test session's own Ray (RAY_ADDRESS, its auth mode) leaks in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))}
    env.update(HOME=str(root / "home"), RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    gcs, dashboard, client_server, agent = _free_ports(4)
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0",
           f"--port={gcs}", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client_server}",
           f"--dashboard-agent-listen-port={agent}", "--min-worker-port=0", "--max-worker-port=0",
           "--include-dashboard=true", f"--temp-dir={root / 'ray'}", "--object-store-memory=100000000"]
    with open(root / "head.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, auth = f"http://127.0.0.1:{dashboard}", {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 120
        while True:  # the job API answers once the dashboard is up
            assert proc.poll() is None, (root / "head.log").read_text()[-3000:]
            try:
                JobSubmissionClient(url, headers=auth)
                break
            except (OSError, RuntimeError):  # not listening yet, or the job module not loaded yet
                assert time.monotonic() < deadline, (root / "head.log").read_text()[-3000:]
                time.sleep(0.5)
        yield url, auth, root, gcs
    finally:
        _stop(proc, root)


def _table(folder: Path, name: str) -> list[dict]:
    return ds.dataset(str(folder / "results" / name), format="parquet").to_table().to_pylist()


def test_a_study_submitted_as_a_job_runs_on_the_cluster(head):
    url, auth, root, gcs = head
    # token auth is really on: the same request without the token is refused
    with pytest.raises(urllib.error.HTTPError) as unauthorised:
        urllib.request.urlopen(f"{url}/api/jobs/", timeout=30)
    assert unauthorised.value.code == 401
    # and so is a driver without it: exit 2, one line that says what is missing, nothing written
    tokenless = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))}
    # Ray's own knob for its connection attempts (about one a second): 3 instead of 20 before it gives up
    tokenless.update(HOME=str(root / "tokenless"), RAY_USAGE_STATS_ENABLED="0", RAY_gcs_server_port_wait_time_s="3")
    refused_file, refused_store = write_study(root, "refused"), root / "refused_store"
    # (it waits on its retries while the job below runs: checked after the job)
    refused = subprocess.Popen([sys.executable, "run_study.py", "run", str(refused_file), "--storage", str(refused_store),
                                "--address", f"127.0.0.1:{gcs}", "--connect-timeout", "60"],
                               cwd=REPO, env=tokenless, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # no baseline and one search trial: every trial is a new worker process to start, the test's main cost
    spec_file = write_study(root, "clustered", baselines=[], search=search(num_samples=1))
    store = root / "studies"
    client = JobSubmissionClient(url, headers=auth)
    # as `ray job submit --working-dir . -- python run_study.py run ... --address auto`: the repository is
    # uploaded, the driver runs on the head and joins the cluster it runs in
    job = client.submit_job(
        entrypoint=f"{shlex.quote(sys.executable)} run_study.py run {spec_file} --storage {store} --address auto",
        runtime_env={"working_dir": str(REPO)})
    deadline = time.monotonic() + 600  # a guard against a hang, not a performance check
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(1)
    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
    out, err = refused.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and not out, err[-3000:]
    assert lines[0].startswith(f"error: --address 127.0.0.1:{gcs}: could not connect to Ray") and "RAY_AUTH_MODE=token" in lines[0]
    assert not refused_store.exists()

    folder = store / "clustered"
    trials = _table(folder, "trials")
    ids = [r["trial_id"] for r in trials]
    assert len(ids) == len(set(ids))  # each trial exactly once
    assert sorted((r["role"], r["method"]) for r in trials) == [
        ("base", "base_clean"), ("base", "base_cue"), ("search", "cbft")]
    assert all(r["status"] == "completed" and r["error"] is None for r in trials)
    # every trial ran on the submitted cluster's one node (a driver that started a Ray of its own would
    # not); a base row names the node its model trained on
    driver_node = client.get_job_info(job).driver_node_id
    assert driver_node and {r["node"] for r in trials} == {driver_node}
    for r in trials:  # whole test images counted: each accuracy a multiple of 1/100 (n_test)
        assert all(abs(r[f"acc_{v}"] * 100 - round(r[f"acc_{v}"] * 100)) < 1e-6 for v in VIEWS), r
    paths = _table(folder, "paths")
    expected = {r["trial_id"]: ({"cue_to_clean"} if r["method"] == "base_clean" else {"cue_to_ft", "ft_to_clean"})
                for r in trials if r["method"] != "base_cue"}  # the base pair's path is on its clean row
    for trial_id, names in expected.items():
        mine = [p for p in paths if p["trial_id"] == trial_id]
        assert {p["path"] for p in mine} == names and len(mine) == len(names) * 3 * len(VIEWS)  # 3 alphas
        row = next(r for r in trials if r["trial_id"] == trial_id)
        for name in names:  # the row's loss barriers, by hand from the path's three points
            for view in VIEWS:
                loss = {p["alpha"]: p["loss"] for p in mine if p["path"] == name and p["view"] == view}
                assert row[f"barrier_loss_{name}_{view}"] == pytest.approx(max(0.0, loss[0.5] - (loss[0.0] + loss[1.0]) / 2))
