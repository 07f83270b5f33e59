"""User-facing errors.

Every mistake a user can make (a bad scenario, a malformed data file) is raised as an
:class:`InputError`. The command line prints its one-line message and exits with code 2, without a
traceback; library callers can catch it. Programming errors are left as ordinary exceptions.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(Exception):
    """A problem with something the user gave us (file, key path, value, what is allowed).

    Parameters
    ----------
    message : str
        What is wrong and what is allowed.
    file : str or path, optional
        The file the problem is in, if any.
    where : str, optional
        A key path (``strategies.safe_sleep.coverage``) or a row (``row 17``), if any.
    """

    exit_code = 2

    def __init__(self, message: str, file: str | None = None, where: str | None = None):
        self.message = message
        self.file = None if file is None else str(file)
        self.where = where
        super().__init__(self.format())

    def format(self) -> str:
        """Return the one-line message: ``file: where: message`` (absent parts left out)."""
        parts = []
        if self.file:
            parts.append(self.file)
        if self.where:
            parts.append(self.where)
        prefix = ": ".join(parts)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return _one_line(text)


def _one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (a file name or value
    holding a newline must not split the one-line message)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def did_you_mean(value: str, allowed: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest allowed value, or ``""``.

    Parameters
    ----------
    value : str
        The value given.
    allowed : iterable of str
        The allowed values.

    Returns
    -------
    str
        The hint, with a leading space, or ``""`` when no value is close (difflib ratio below
        0.6).
    """
    matches = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
