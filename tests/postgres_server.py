"""A real PostgreSQL server on 127.0.0.1 for the tests: the distribution's package (``.ci/run``
installs it), a throw-away cluster in a temporary folder, trusted local connections only.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user the package
creates, in a folder that user owns (pytest's own temporary folders are private to root).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ports import free_port


def _bin_dir() -> Path | None:
    """The newest installed server's programs (Debian: /usr/lib/postgresql/<major>/bin), or the PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """``with PostgresServer() as url:`` a server answering at ``url`` (postgresql://…/postgres), gone after."""

    def __enter__(self) -> str:
        bin_dir = _bin_dir()
        if bin_dir is None:
            if os.environ.get("CI", "").lower() == "true":  # .ci/run installs it: missing is a broken CI
                raise AssertionError("PostgreSQL's server programs (initdb, postgres) are not installed")
            pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
        self.folder = Path(tempfile.mkdtemp(prefix="mmc-sweep-pg-"))
        run_as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        data = self.folder / "data"
        subprocess.run(run_as + [str(bin_dir / "initdb"), "-D", str(data), "-U", "mmc", "--auth=trust", "--no-sync",
                                 "-E", "UTF8"], check=True, capture_output=True)
        port = free_port()
        self.log = (self.folder / "server.log").open("w")
        # TCP on 127.0.0.1 only (no Unix socket: its default folder may not be writable); no fsync: a test
        self.proc = subprocess.Popen(run_as + [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                                               "-p", str(port), "-k", "", "-c", "fsync=off"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        url = f"postgresql://mmc@127.0.0.1:{port}/postgres"
        self._wait_until_ready(url)
        return url

    def _wait_until_ready(self, url: str) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(url).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise AssertionError("PostgreSQL did not start:\n" + (self.folder / "server.log").read_text()) from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()  # "smart" shutdown: waits for clients, which are gone by now
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
