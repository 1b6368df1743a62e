"""Errors that a user can act on: reported as one line, never as a traceback."""


class UserError(Exception):
    """A problem with the input or environment, with what to do about it in the message."""
