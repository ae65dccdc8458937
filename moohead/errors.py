"""The one exception type that means "the user gave us something we cannot use"."""


class MooheadError(Exception):
    """A problem with the user's input: the CLI prints it as one line and exits with 2.

    The message should say what is wrong and how to fix it.
    """
