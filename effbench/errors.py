"""User-facing errors and warnings: the command line prints their message, never a traceback."""

import sys


def warn(message: str, *, loud: bool = False) -> None:
    """A warning line on stderr (stdout carries only tables and JSON); `loud` for results that mislead."""
    print(f"effbench: {'WARNING' if loud else 'warning'}: {message}", file=sys.stderr)


class EffbenchError(Exception):
    """An error caused by input or environment, with a message that says what to do."""


class UnknownNameError(EffbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CardError(EffbenchError, ValueError):
    """A malformed task card, metric card or board spec: names the field and what is allowed."""


class DataError(EffbenchError):
    """Missing source package, checksum mismatch, unreadable data."""
