"""User-facing errors: the command line prints their message, never a traceback."""


class EffbenchError(Exception):
    """An error caused by input or environment, with a message that says what to do."""


class UnknownNameError(EffbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CardError(EffbenchError, ValueError):
    """A malformed task card, metric card or board spec: names the field and what is allowed."""


class DataError(EffbenchError):
    """Missing source package, checksum mismatch, unreadable data."""
