"""Errors a user can fix.

Raise :class:`UserError` for anything caused by input (a name, a path, a file, an option): the CLI prints
its message as a single line and exits with status 2, without a traceback. The message must name the
problem *and* the fix, e.g. ``"data root /x does not exist; pass --data-root pointing at CUB_200_2011/"``.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """An unknown plug-in name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnavailableError(UserError):
    """A registered plug-in that cannot run here (missing optional dependency, no GPU, ...)."""


class InvalidParameterError(UserError, ValueError):
    """A parameter value out of its range (``steps=0``, ``n=-5``); also a ValueError for library callers."""


class EmptyEvaluationError(UserError, ValueError):
    """A metric asked for a value over no items, or over fewer items than the labels it must tell apart:
    an error, never a number (an NMI over nothing would read 100.00)."""
