"""Errors a user can cause. The CLI prints their message as one line and exits 2."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""
