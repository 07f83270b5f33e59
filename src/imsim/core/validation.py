"""Validation of input files: one mechanism for scenarios, plans, sweeps and collaborative blocks.

Every file a user writes is a YAML mapping read by :func:`read_yaml` (no aliases, a size limit,
clear errors for a missing file, a folder, bad YAML, duplicate keys or a non-mapping) and checked
by a pydantic model built on :class:`StrictModel`: unknown keys are refused with a "did you mean",
types are strict (``"3"`` is not a number, ``true`` is not 1), and ``inf``/``nan`` are never
numbers. Numbers, shares, states and keyed mappings are checked by the reusable validators and
annotated types here (:data:`Fraction`, :func:`between`, :data:`StateKey`, :func:`keyed_mapping`
...), so the same mistake reads the same in every kind of file.

A validator reports a problem by raising :class:`Invalid` -- a message, plus the key path below
the field being checked (``at``). :func:`validate_model` turns the first problem pydantic found
into one :class:`imsim.core.errors.InputError` naming the file, the full key path
(``strategies.safe_sleep.coverage.2026``), the bad value and what is allowed::

    scenario.yaml: strategies.safe_sleep.covrage: unknown key 'covrage' (did you mean
    'coverage'?); allowed keys: coverage, reach
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from imsim.core.constants import FIRST_YEAR, MAX_YEARS_AHEAD, STATES
from imsim.core.errors import InputError, did_you_mean

__all__ = [
    "MAX_DEPTH", "MAX_FILE_BYTES", "NAME_PATTERN", "parse_yaml", "read_text_file",
    "read_bytes_bounded", "STATE_CHOICES", "Invalid", "StrictModel",
    "validate_model", "to_input_error", "key_path", "read_yaml", "short", "got", "suggest", "one_of",
    "number", "whole_number", "fraction", "between", "year", "max_year", "state_key",
    "keyed_mapping", "FiniteNumber", "PositiveNumber", "NonNegativeNumber", "Fraction",
    "StateKey", "Year", "Name",
]

#: Input files larger than this are refused before they are parsed.
MAX_FILE_BYTES = 1_000_000
#: What "a state" allows, in messages.
STATE_CHOICES = "the 50 state USPS codes and DC"


# ---------------------------------------------------------------------------------------------
# Reporting a problem
# ---------------------------------------------------------------------------------------------

class Invalid(ValueError):
    """A problem found by a validator: what is wrong and allowed, and where below the field.

    Parameters
    ----------
    message : str
        One line naming the bad value and what is allowed.
    at : iterable of (str or int)
        Key path below the value being validated: strings are keys (``.AL``), integers list
        positions (``[3]``). Empty when the problem is the value itself.
    """

    def __init__(self, message: str, at: Iterable[str | int] = ()):
        super().__init__(message)
        self.message = message
        self.at = tuple(at)

    def under(self, *keys: str | int) -> Invalid:
        """Return the same problem, found below ``keys``.

        Parameters
        ----------
        *keys : str or int
            Key-path parts to prepend to ``at``.

        Returns
        -------
        Invalid
            A new problem with the longer key path.
        """
        return Invalid(self.message, keys + self.at)


def short(value: Any, limit: int = 60) -> str:
    """Return ``repr(value)``, shortened to ``limit`` characters (numpy scalars as Python).

    Parameters
    ----------
    value : Any
        The value to show in a message.
    limit : int
        Most characters returned (a longer text ends in ``...``).

    Returns
    -------
    str
        The representation.
    """
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(value: Any, allowed: Iterable[Any]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest allowed value (case first), or ``""``.

    Parameters
    ----------
    value : Any
        The value given.
    allowed : iterable
        The allowed values (compared as text).

    Returns
    -------
    str
        The hint, with a leading space, or ``""`` when nothing is close.
    """
    allowed = [str(a) for a in allowed]
    text = str(value)
    for a in allowed:
        if text.lower() == a.lower() and text != a:
            return f" (did you mean '{a}'?)"
    return did_you_mean(text, allowed)


def one_of(value: Any, allowed: Iterable[Any], kind: str = "value", listed: str | None = None):
    """Return ``value`` if it is one of ``allowed``; else raise :class:`Invalid` naming them.

    Parameters
    ----------
    value : Any
        The value given (only text can match).
    allowed : iterable
        The allowed values.
    kind : str
        What the values are ("state", "strategy"), for the message.
    listed : str, optional
        Replaces the list of allowed values in the message (for long lists).

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    Invalid
        If ``value`` is not allowed, with a "did you mean".
    """
    allowed = tuple(allowed)
    if isinstance(value, str) and value in allowed:
        return value
    listed = ", ".join(map(str, allowed)) if listed is None else listed
    raise Invalid(f"unknown {kind} {short(value)}{suggest(value, allowed)}; allowed: {listed}")


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

def got(value: Any) -> str:
    """Return ``"got <value>"`` for a message, noting when text looks like a number.

    The one rule for numbers in imsim files: written without quotes (``0.5``, ``7``, ``1e6``)
    they are numbers; quoted (``'0.5'``) they are text, and text is refused wherever a number
    goes, in every file and every key.

    Parameters
    ----------
    value : Any
        The value given.

    Returns
    -------
    str
        ``"got '0.5' (quoted, so text: write numbers without quotes)"`` or ``"got <repr>"``.
    """
    text = f"got {short(value)}"
    if isinstance(value, str):
        try:
            float(value.replace("_", ""))
        except ValueError:
            return text
        return text + " (quoted, so text: write numbers without quotes)"
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def number(value: Any, low: float = -math.inf, high: float = math.inf, *,
           open_low: bool = False, open_high: bool = False, integer: bool = False) -> float:
    """Return ``value`` as a finite number in ``[low, high]``; else raise :class:`Invalid`.

    Booleans and text are never numbers, nor are ``inf`` and ``nan``.

    Parameters
    ----------
    value : Any
        The value given.
    low, high : float
        The allowed range (infinite: unbounded on that side).
    open_low, open_high : bool
        Exclude the bound.
    integer : bool
        Ask for a whole number (an ``int``, not a float such as ``3.0``).

    Returns
    -------
    float or int
        ``value`` as ``float`` (``int`` with ``integer``).

    Raises
    ------
    Invalid
        If ``value`` is not a finite number (whole, with ``integer``) in the range.
    """
    kind = "a whole number" if integer else "a number"
    if not _is_number(value):
        raise Invalid(f"expected {kind}, {got(value)}")
    if not math.isfinite(value):
        raise Invalid(f"expected a finite number, got {short(value)}")
    if integer and not isinstance(value, (int, np.integer)):
        raise Invalid(f"expected {kind}, got {short(value)}")
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        if math.isfinite(low) and math.isfinite(high):
            allowed = (f"{_fmt(low)} to {_fmt(high)}" if not (open_low or open_high) else
                       f"{'(' if open_low else '['}{_fmt(low)}, {_fmt(high)}{')' if open_high else ']'}")
        elif math.isfinite(low):
            allowed = f"{kind} {'>' if open_low else '>='} {_fmt(low)}"
        else:
            allowed = f"{kind} {'<' if open_high else '<='} {_fmt(high)}"
        raise Invalid(f"{short(value)} is out of range; allowed: {allowed}")
    return int(value) if integer else float(value)


def whole_number(value: Any, low: float = -math.inf, high: float = math.inf) -> int:
    """Return ``value`` as an ``int`` in ``[low, high]``; else raise :class:`Invalid`.

    Parameters
    ----------
    value : Any
        The value given.
    low, high : float
        The allowed range, inclusive.

    Returns
    -------
    int
        ``value``.
    """
    return number(value, low, high, integer=True)


def fraction(value: Any) -> float:
    """Return ``value`` as a share in ``[0, 1]`` (a float); else raise :class:`Invalid`."""
    if not _is_number(value):
        raise Invalid(f"expected a share from 0 to 1, {got(value)}")
    if not math.isfinite(value):
        raise Invalid(f"expected a finite number, got {short(value)}")
    if not 0.0 <= value <= 1.0:
        raise Invalid(f"{short(value)} is outside [0, 1]; allowed: a share from 0 to 1")
    return float(value)


def between(low: float, high: float, *, integer: bool = False) -> Any:
    """Return an annotated type: a finite number (``integer``: whole) from ``low`` to ``high``.

    The bounds also appear in the JSON Schema (``minimum``/``maximum``).

    Parameters
    ----------
    low, high : float
        The allowed range, inclusive.
    integer : bool
        Ask for a whole number.

    Returns
    -------
    typing.Annotated
        A pydantic field type validated by :func:`number`.
    """
    base = int if integer else float
    return Annotated[base, Field(ge=low, le=high),
                     BeforeValidator(lambda v: number(v, low, high, integer=integer))]


# ---------------------------------------------------------------------------------------------
# Years, states, names, keyed mappings
# ---------------------------------------------------------------------------------------------

def max_year() -> int:
    """Return the last year an input may reach: this calendar year + ``MAX_YEARS_AHEAD``."""
    return _dt.date.today().year + MAX_YEARS_AHEAD


def year(value: Any) -> int:
    """Return ``value`` as a calendar year from ``FIRST_YEAR`` to :func:`max_year`.

    Parameters
    ----------
    value : Any
        The value given (a whole number, not text or a float).

    Returns
    -------
    int
        The year.

    Raises
    ------
    Invalid
        If ``value`` is not a whole year in the range.
    """
    if _is_number(value) and not math.isfinite(value):
        raise Invalid(f"expected a finite number, got {short(value)}")
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise Invalid(f"expected a whole year, {got(value)}")
    if not FIRST_YEAR <= value <= max_year():
        raise Invalid(f"{value} is out of range; allowed: a year from {FIRST_YEAR} to "
                      f"{max_year()} (data start in {FIRST_YEAR}; projections reach at most "
                      f"{MAX_YEARS_AHEAD} years ahead)")
    return int(value)


def state_key(value: Any, extra: tuple[str, ...] = ()) -> str:
    """Return ``value`` if it is a USPS state code (or one of ``extra``); else raise.

    Parameters
    ----------
    value : Any
        The value given (case-sensitive).
    extra : tuple of str
        Other allowed values (e.g. ``"ALL"``).

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    Invalid
        For anything else, with a "did you mean".
    """
    if isinstance(value, str) and (value in STATES or value in extra):
        return value
    listed = STATE_CHOICES + "".join(f", or '{e}'" for e in extra)
    return one_of(value, extra + STATES, "state", listed=listed)


def keyed_mapping(value: Any, allowed: Iterable[str], what: str, example: str, kind: str, *,
                  check: Callable[[Any], Any] | None = None, listed: str | None = None):
    """Check a mapping whose keys must be ``allowed``; validate each value with ``check``.

    Parameters
    ----------
    value : Any
        The mapping (``None`` is returned as is).
    allowed : iterable of str
        The allowed keys.
    what, example : str
        The mapping's name and a short example of it, for the "not a mapping" message.
    kind : str
        What a key is ("state", "race id"), for the "unknown key" message.
    check : callable, optional
        Called on each value; returns the value to keep. Its :class:`Invalid` is reported below
        the key.
    listed : str, optional
        Replaces the list of allowed keys in messages (``STATE_CHOICES`` for states).

    Returns
    -------
    dict or None
        The mapping with checked values.

    Raises
    ------
    Invalid
        If ``value`` is not a mapping, a key is not allowed, or ``check`` refuses a value.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise Invalid(f"{what} must be a mapping like {example}, got {short(value)}")
    allowed = tuple(allowed)
    if listed is None and kind == "state":
        listed = STATE_CHOICES
    out = {}
    for key, item in value.items():
        try:
            one_of(key, allowed, kind, listed)
        except Invalid as exc:
            raise exc.under(str(key)) from None
        try:
            out[key] = item if check is None else check(item)
        except Invalid as exc:
            raise exc.under(str(key)) from None
    return out


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}"


def _name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(NAME_PATTERN, value):
        raise Invalid("name must be 1-80 letters, digits, '-', '_' or '.', starting with a "
                      f"letter or digit; got {short(value)}")
    return value


#: A finite number.
FiniteNumber = Annotated[float, BeforeValidator(lambda v: number(v))]
#: A finite number > 0 (a ratio, a standard deviation).
PositiveNumber = Annotated[float, Field(gt=0),
                           BeforeValidator(lambda v: number(v, 0.0, open_low=True))]
#: A finite number >= 0 (a cost, a scale factor).
NonNegativeNumber = Annotated[float, Field(ge=0), BeforeValidator(lambda v: number(v, 0.0))]
#: A share in [0, 1] (coverage, prevalence, a probability).
Fraction = Annotated[float, Field(ge=0, le=1), BeforeValidator(fraction)]
#: A USPS state code (50 states and DC).
StateKey = Annotated[str, BeforeValidator(lambda v: state_key(v))]
#: A calendar year from the first data year to :func:`max_year`.
Year = Annotated[int, Field(ge=FIRST_YEAR), BeforeValidator(year)]
#: The name of a run (it names the results folder).
Name = Annotated[str, Field(pattern=NAME_PATTERN), BeforeValidator(_name)]


# ---------------------------------------------------------------------------------------------
# The strict base model and the one error conversion
# ---------------------------------------------------------------------------------------------

class StrictModel(BaseModel):
    """Base of every input model: a mapping with known keys only, strict types, finite numbers.

    An unknown key is refused with the allowed keys and a "did you mean"; a value that is not a
    mapping is refused with its type. Models are frozen once validated.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, Mapping):
            raise Invalid(f"expected a mapping (key: value), got {type(data).__name__} "
                          f"{short(data)}")
        allowed = list(cls.model_fields)
        for key in data:
            if key not in allowed:
                raise Invalid(f"unknown key '{key}'{suggest(key, allowed)}; allowed keys: "
                              f"{', '.join(allowed)}", at=(str(key),))
        return dict(data)


_TYPE_MESSAGES = {
    "int_type": "expected a whole number", "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number", "float_type": "expected a number",
    "float_parsing": "expected a number", "finite_number": "expected a finite number",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "string_type": "expected text", "list_type": "expected a list", "tuple_type": "expected a list",
    "dict_type": "expected a mapping (key: value)", "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
}
_RANGE = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
          "less_than": "<"}
# pydantic's own location entries (union members, validator wrappers, dict keys): not user keys.
_BOOKKEEPING = re.compile(r"^[a-z][a-z-]*\[.*\]$|^\[key\]$")


def _describe(e: dict) -> tuple[str, tuple]:
    """The message of one pydantic error and the key path below its location."""
    kind, value = e["type"], e.get("input")
    ctx = e.get("ctx") or {}
    err = ctx.get("error")
    if isinstance(err, Invalid):
        return err.message, err.at
    if kind == "missing":
        return "required key is missing", ()
    if kind == "extra_forbidden":
        return "unknown key", ()
    if kind == "literal_error":
        allowed = re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", "")))
        return (f"unknown value {short(value)}{suggest(value, allowed)}; allowed: "
                f"{', '.join(allowed)}"), ()
    if kind in _TYPE_MESSAGES:
        if "mapping" in _TYPE_MESSAGES[kind]:
            return f"{_TYPE_MESSAGES[kind]}, got {type(value).__name__} {short(value)}", ()
        return f"{_TYPE_MESSAGES[kind]}, {got(value)}", ()
    if kind in _RANGE:
        bound = next(iter(v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt")), "?")
        return f"{short(value)} is out of range; allowed: {_RANGE[kind]} {bound}", ()
    msg = str(e.get("msg", "invalid value"))
    return msg.removeprefix("Value error, "), ()


def key_path(*parts: Any) -> str:
    """Join key-path parts: ``("strategies", "safe_sleep", 2)`` -> ``strategies.safe_sleep[2]``.

    Parts that are pydantic's own bookkeeping (union members, validator wrappers) are skipped.

    Parameters
    ----------
    *parts : str or int
        Keys (text) and list positions (integers).

    Returns
    -------
    str
        The key path (``""`` for no parts).
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _BOOKKEEPING.match(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def to_input_error(err: ValidationError, file: str | Path | None = None,
                   root: str | None = None) -> InputError:
    """Turn a pydantic ``ValidationError`` into one :class:`InputError`.

    Parameters
    ----------
    err : pydantic.ValidationError
        The error of ``model_validate``; its first problem is reported.
    file : str or path, optional
        The file being validated, if any.
    root : str, optional
        Key path of the validated mapping inside its file (``"collaborative"``), if any.

    Returns
    -------
    InputError
        Naming the file, the key path, the bad value and what is allowed.
    """
    errors = err.errors(include_url=False)
    # Prefer our own messages over pydantic's generic ones (e.g. a union's "not a float").
    ours = [e for e in errors if isinstance((e.get("ctx") or {}).get("error"), Invalid)]
    e = (ours or errors)[0]
    message, below = _describe(e)
    parts = ([root] if root else []) + list(e["loc"]) + list(below)
    return InputError(message, file=None if file is None else str(file),
                      where=key_path(*parts) or None)


def validate_model(model: type[BaseModel], data: Any, file: str | Path | None = None, *,
                   root: str | None = None, context: dict | None = None):
    """Validate ``data`` as ``model``; raise :class:`InputError` for the first problem.

    Parameters
    ----------
    model : type of pydantic.BaseModel
        A :class:`StrictModel` subclass.
    data : Any
        The parsed mapping.
    file, root : str, optional
        As in :func:`to_input_error`.
    context : dict, optional
        Passed to the model's validators (``info.context``).

    Returns
    -------
    BaseModel
        The validated model.

    Raises
    ------
    InputError
        For the first problem, naming the file, key path, bad value and what is allowed.
    """
    try:
        return model.model_validate(data, context=context)
    except ValidationError as err:
        raise to_input_error(err, file, root) from None


# ---------------------------------------------------------------------------------------------
# Safe YAML
# ---------------------------------------------------------------------------------------------

#: Deepest nesting of mappings and lists an input file may have (the deepest real key path,
#: ``collaborative.starting_coverage.AL.safe_sleep``, is 4 levels).
MAX_DEPTH = 32

#: ``1e6``, ``2.5E-3``: YAML 1.1 reads an exponent without a dot as text; imsim reads it as a
#: number (the one rule for numbers: written without quotes they are numbers, quoted they are
#: text, and text is never accepted where a number goes).
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _SafeLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases ("alias bombs"), duplicate keys and deep nesting."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases (*name) are not allowed in imsim input files",
                self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep (mappings and lists "
                    "inside each other); imsim files need at most a few", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be text or a number, got a "
                    f"{type(key).__name__}", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short(key)} (a key may appear once per "
                    "mapping; check the indentation)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SafeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT,
                                  list("-+0123456789"))


def read_bytes_bounded(p: Path, what: str, limit: int) -> bytes:
    """Read at most ``limit`` bytes of a regular file; refuse anything else in one line.

    The file is opened without blocking (a FIFO never hangs) and checked with ``fstat`` on the
    open descriptor: only a regular file is read, and never more than ``limit + 1`` bytes,
    whatever ``st_size`` says (``/proc`` files report 0).
    """
    import errno
    import os
    import stat

    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise InputError(f"{what} file not found", file=str(p)) from None
    except IsADirectoryError:
        raise InputError(f"expected a {what} file, got a directory", file=str(p)) from None
    except OSError as exc:
        reason = ("the file name is too long" if exc.errno == errno.ENAMETOOLONG
                  else exc.strerror or type(exc).__name__)
        raise InputError(f"cannot read the {what} file ({reason})", file=str(p)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"expected a {what} file, got a directory", file=str(p))
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                    "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                    "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise InputError(f"expected a regular {what} file, got {kind}", file=str(p))
        chunks, total = [], 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(1 << 16, limit + 1 - total))
            except BlockingIOError:      # pragma: no cover - regular files do not block
                break
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read the {what} file ({exc.strerror or type(exc).__name__})",
                         file=str(p)) from None
    finally:
        os.close(fd)
    if total > limit:
        raise InputError(f"file is over {limit:,} bytes; {what} files are limited to "
                         f"{limit:,} bytes", file=str(p))
    return b"".join(chunks)


def read_text_file(path: str | Path, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """Read a regular UTF-8 text file of at most ``limit`` bytes; raise one-line errors.

    Parameters
    ----------
    path : str or path
        The file.
    what : str
        What the file is ("scenario", "targets"), for messages.
    limit : int
        Most bytes read; a longer file is refused.

    Returns
    -------
    str
        The text (a leading UTF-8 byte-order mark removed).

    Raises
    ------
    InputError
        For a missing file, a folder, a FIFO, device or socket, an unreadable file, one over
        ``limit`` bytes or text that is not UTF-8.
    """
    p = Path(path)
    raw = read_bytes_bounded(p, what, limit)
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                         file=str(p)) from None


def parse_yaml(text: str, file: str | Path | None = None, what: str = "scenario") -> Any:
    """Parse YAML text with imsim's strict loader; raise one-line :class:`InputError`.

    Parameters
    ----------
    text : str
        The YAML text.
    file : str or path, optional
        The file to name in errors.
    what : str
        What the text is, for messages.

    Returns
    -------
    Any
        The parsed document.
    """
    file = None if file is None else str(file)
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"invalid YAML: {' '.join(str(problem).split())}", file=file,
                         where=where) from None
    except RecursionError:                  # pragma: no cover - MAX_DEPTH stops it first
        raise InputError(f"invalid YAML: nested too deeply; {what} files need at most a few "
                         "levels", file=file) from None


def read_yaml(path: str | Path, what: str = "scenario") -> dict:
    """Read a YAML mapping safely; raise :class:`InputError` for anything wrong with the file.

    Parameters
    ----------
    path : str or path
        The file.
    what : str
        What the file is ("scenario", "plan", "sweep"), for messages.

    Returns
    -------
    dict
        The file's top-level mapping.

    Raises
    ------
    InputError
        For a missing file, a folder, a FIFO or device, a file over :data:`MAX_FILE_BYTES`
        (at most that many bytes are ever read), text that is not UTF-8, invalid YAML
        (aliases, duplicate keys and nesting deeper than :data:`MAX_DEPTH` included), an empty
        file or a top level that is not a mapping.
    """
    p = Path(path)
    text = read_text_file(p, what)
    data = parse_yaml(text, p, what)
    if data is None:
        raise InputError(f"the {what} file is empty", file=str(p))
    if not isinstance(data, dict):
        raise InputError(f"a {what} file must be a mapping of keys (key: value), got a "
                         f"{type(data).__name__}", file=str(p))
    return data
