"""One error type for mistakes a user can fix (bad params, bad data).

The CLI turns a :class:`UserError` into one line on stderr and exit status 2, with no
traceback; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's params or data: the message names the key or file and what was expected."""


class ParamsError(UserError):
    """params.yaml has an unknown key, a wrong type or an impossible value."""


class DataError(UserError):
    """An input file is missing, unreadable or does not match its format."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (for a UserError that quotes a library's error): its lines joined,
    or the exception's type when it has no message."""
    return " ".join(str(exc).split()) or type(exc).__name__
