"""The one error type that means "the user's input is wrong": the CLI prints it as one line, exit 2."""


class InputError(Exception):
    """Bad input (file, key, argument). The message is one line naming what and what was expected."""
