"""Errors a user can fix. Runners print their message as one line, without a traceback."""


class UserError(ValueError):
    """Bad input or configuration: the message names the file, column, flag or value and
    says what to do."""
