"""A real S3-protocol server on 127.0.0.1 for the tests: moto in server mode, as its own process.

Credentials are fakes the whole session shares (``conftest.ray_cluster`` sets them before Ray starts,
so its workers have them too); a study reaches the server through the URI's query, as a user's would.
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from ports import free_port

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mmc-sweep-tests", "AWS_SECRET_ACCESS_KEY": "mmc-sweep-tests",
                    "AWS_EC2_METADATA_DISABLED": "true"}  # no probe of an instance's metadata service


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port

    def uri(self, path: str) -> str:
        """``s3://PATH?…``: the URI form pyarrow.fs reads, pointed at this server."""
        return f"s3://{path}?endpoint_override={self.endpoint}&scheme=http"

    @property
    def fs(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http", allow_bucket_creation=True)

    def upload(self, local: Path, path: str) -> None:
        pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def download(self, path: str, local: Path) -> Path:
        """A local copy of a folder in the bucket as it is now: finished files only (a name starting with
        ``.`` is a write in progress, gone a moment later), each written here whole; files that vanished
        since are kept (none do here: an object store is never compacted)."""
        for info in self.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True)):
            relative = info.path[len(path) + 1:]
            if info.type != pafs.FileType.File or any(part.startswith(".") for part in relative.split("/")):
                continue
            try:
                data, again = (self._read(info.path) for _ in range(2))
            except FileNotFoundError:  # removed since it was listed
                continue
            if data != again:  # replaced while it was read: moto then serves torn bytes (S3 itself never does)
                continue
            target = local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return local


def start_s3_server(log: Path, bucket: str) -> tuple[subprocess.Popen, S3Server]:
    """``moto.server`` on a free port, answering, with ``bucket`` created."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = S3Server(f"127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        try:
            server.fs.create_dir(bucket)
            return proc, server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("the S3 server did not start:\n" + log.read_text()) from None
            time.sleep(0.1)
