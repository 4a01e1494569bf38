"""Errors the CLI prints as one line: bad input (exit 2) and a full storage (exit 1)."""


class InputError(Exception):
    """Bad input (file, key, argument). The message is one line naming what and what was expected."""


class StorageFull(Exception):
    """The study's storage has no space left (ENOSPC, or a quota): the run stops with this one line
    and exit code 1; what was written stays whole, and ``resume`` goes on once space is freed."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none): what a one-line error quotes."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
