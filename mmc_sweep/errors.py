"""The one error type that means "the user's input is wrong": the CLI prints it as one line, exit 2."""


class InputError(Exception):
    """Bad input (file, key, argument). The message is one line naming what and what was expected."""


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none): what a one-line error quotes."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
