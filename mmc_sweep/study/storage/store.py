"""Where a study's files live: a local (or shared) folder or a ``pyarrow.fs`` URI.

All writes are atomic where the file system allows it: write a temporary file whose name starts
with ``.`` in the same folder, then rename it into place (readers skip ``.``-prefixed names).
"""
from __future__ import annotations

import errno
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from mmc_sweep.errors import StorageFull
from mmc_sweep.study.faults import nth_pass


def split_query(location: str) -> tuple[str, str]:
    """(the location without a trailing ``/``, its query with the ``?``, or ""):
    ``s3://b/studies/?endpoint_override=…`` -> (``s3://b/studies``, ``?endpoint_override=…``)."""
    base, sep, query = location.partition("?")
    return base.rstrip("/"), sep + query


@dataclass(frozen=True)
class Store:
    """A root folder on a file system; paths below it are ``/``-separated and relative."""

    fs: pafs.FileSystem
    root: str
    # what the user gave: a path, or a URI whose query (``?endpoint_override=…``) says how to reach the store
    uri: str

    @staticmethod
    def open(location: str, filesystem: pafs.FileSystem | None = None) -> "Store":
        """``location``: a local path or a URI; or, with ``filesystem`` (any ``pyarrow.fs`` file system,
        e.g. one a test builds), a path on that file system."""
        if filesystem is not None:
            root = location.rstrip("/")
            return Store(filesystem, root, f"{filesystem.type_name}:{getattr(filesystem, 'base_path', '')}{root}")
        if "://" in location:
            fs, root = pafs.FileSystem.from_uri(location)
            return Store(fs, root.rstrip("/"), "".join(split_query(location)))
        path = str(Path(location).expanduser().resolve())
        return Store(pafs.LocalFileSystem(), path, path)

    @property
    def given_filesystem(self) -> pafs.FileSystem | None:
        """The file system Tune is handed (storage_filesystem) for storage that is not a local folder:
        a URI's query (an endpoint, a scheme) would not survive Tune appending to the path, the file
        system object carries it (and pickles to the workers without credentials: each node has its own)."""
        return None if self.local_root is not None else self.fs

    @property
    def local_root(self) -> Path | None:
        """The root as a local path when the file system is the local one (journals need one)."""
        return Path(self.root) if isinstance(self.fs, pafs.LocalFileSystem) else None

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def uri_of(self, *parts: str) -> str:
        """The URI (or path) of ``parts`` below the root, as a user would type it: a query stays at the end."""
        base, query = split_query(self.uri)
        return "/".join([base, *parts]) + query

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as f:
            return f.read()

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Atomic on local and POSIX-like file systems: temp file + rename. A full storage raises
        :class:`StorageFull` (one line) and leaves the file as it was."""
        final = self.path(*parts)
        folder, name = final.rsplit("/", 1)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            if (passed := nth_pass("disk_full_after")) and passed[0] > passed[1]:  # tests only: a full storage
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), final)
            self.fs.create_dir(folder, recursive=True)
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            if self.local_root is not None:
                os.replace(tmp, final)  # atomic, and replaces an existing file
            else:
                self.fs.move(tmp, final)
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._remove_quietly(tmp)
            raise StorageFull(f"{self.uri_of(*parts)}: the storage is full ({os.strerror(err.errno)}); what was "
                              f"written before is whole: free space, then resume") from None

    def _remove_quietly(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except OSError:  # never written, or the store refuses even that
            pass

    def list(self, *parts: str) -> list[str]:
        """Names of the visible files in a folder (none when it does not exist)."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(selector) if not i.base_name.startswith((".", "_")))


def to_buffer(write) -> bytes:
    """Bytes produced by ``write(file_like)`` (for torch.save and parquet writers)."""
    buf = io.BytesIO()
    write(buf)
    return buf.getvalue()
