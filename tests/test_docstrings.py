"""Docstrings are part of the interface (STYLE.md habit 10): checked from the source, not by eye.

Two rules, read with :mod:`ast` (nothing is imported, so the check is fast and has no side
effects):

1. Every module has a docstring, and so does every public function, class, method and property.
   Public: the name does not start with an underscore and every enclosing class is public.
   Dunder methods (``__init__``, ``__call__``...) and functions nested inside functions are
   exempt; a class's parameters belong in the class docstring.
2. In the modules a user or contributor touches first (:data:`PARAMETER_MODULES`), a function
   with parameters other than ``self``/``cls``/``*args``/``**kwargs`` whose docstring is longer
   than one paragraph documents them in a numpydoc ``Parameters`` section. A one-line or
   one-paragraph docstring may name its parameters in prose.

The checker is tested on a synthetic module first, so a checker that finds nothing cannot pass
for a clean package.
"""
from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "imsim"

#: Modules (paths below ``src/imsim``; a trailing ``/`` means the whole subpackage) held to rule 2.
PARAMETER_MODULES = (
    "api.py",
    "analysis/runner.py",
    "analysis/draws.py",
    "analysis/results.py",
    "analysis/portfolio.py",
    "analysis/evaluate.py",
    "analysis/sweep.py",
    "birth/params.py",
    "birth/engines.py",
    "birth/kernels.py",
    "inputs/baseline.py",
    "inputs/evidence.py",
    "inputs/fit.py",
    "calibration/targets.py",
    "config/",
)

_PARAMETERS_SECTION = re.compile(r"^[ \t]*Parameters[ \t]*\n[ \t]*-{3,}[ \t]*$", re.MULTILINE)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
#: Statements whose bodies still belong to the enclosing module or class (``if``/``try`` blocks).
_BLOCKS = (ast.If, ast.Try, ast.With)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _named_parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Parameters a reader must be told about: not ``self``/``cls``, not ``*args``/``**kwargs``."""
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return [n for n in names if n not in ("self", "cls")]


def _more_than_one_paragraph(doc: str) -> bool:
    return bool(re.search(r"\n[ \t]*\n", doc.strip()))


def _definitions(body, prefix: str = ""):
    """Yield ``(qualified name, node)`` of the public definitions in ``body``, recursively.

    Descends into public classes and into ``if``/``try``/``with`` blocks, never into functions.
    """
    for node in body:
        if isinstance(node, _BLOCKS):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            for block in blocks:
                yield from _definitions(block, prefix)
        elif isinstance(node, (*_FUNCTIONS, ast.ClassDef)):
            if node.name.startswith("_"):
                continue               # private (dunder methods included)
            yield prefix + node.name, node
            if isinstance(node, ast.ClassDef):
                yield from _definitions(node.body, prefix + node.name + ".")


def docstring_problems(source: str, where: str = "<string>",
                       require_parameters: bool = False) -> list[str]:
    """Return one line per docstring problem of a module's source (empty when there is none).

    Parameters
    ----------
    source : str
        The module's Python source.
    where : str
        How to name the module in the messages.
    require_parameters : bool
        Also apply rule 2 (a ``Parameters`` section in multi-paragraph docstrings).

    Returns
    -------
    list of str
        ``"<where>:<line> <name>: <problem>"`` lines, in source order.
    """
    tree = ast.parse(source)
    problems = []
    if not ast.get_docstring(tree):
        problems.append(f"{where}:1 module: no module docstring")
    for name, node in _definitions(tree.body):
        doc = ast.get_docstring(node)
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        if not doc:
            problems.append(f"{where}:{node.lineno} {name}: {kind} has no docstring")
            continue
        if (require_parameters and isinstance(node, _FUNCTIONS) and _named_parameters(node)
                and _more_than_one_paragraph(doc) and not _PARAMETERS_SECTION.search(doc)):
            problems.append(f"{where}:{node.lineno} {name}: multi-paragraph docstring without "
                            f"a numpydoc 'Parameters' section for "
                            f"{', '.join(_named_parameters(node))}")
    return problems


def _held_to_rule_2(rel: str) -> bool:
    return any(rel == m or (m.endswith("/") and rel.startswith(m)) for m in PARAMETER_MODULES)


# ---------------------------------------------------------------------------------------------
# The checker, on a synthetic module: it must find every planted problem and nothing else.
# ---------------------------------------------------------------------------------------------

SYNTHETIC = textwrap.dedent('''
    import functools


    def undocumented(x):
        return x


    def prose_only(x, y):
        """Return x + y; one paragraph may name its parameters in prose."""
        return x + y


    def long_without_section(x, *, y=1):
        """Return x scaled.

        A second paragraph, but no section for x and y.
        """
        return x * y


    def long_with_section(x):
        """Return x.

        Parameters
        ----------
        x : float
            The value.
        """
        return x


    def only_varargs(*args, **kwargs):
        """Pass everything on.

        Nothing to list: no named parameters.
        """
        return args, kwargs


    def _private(x):
        return x


    def outer():
        """Hold a nested helper (nested functions are not public)."""
        def inner(y):
            return y
        return inner


    class Documented:
        """A class."""

        def __init__(self, a):
            self.a = a

        def method(self, b):
            return b

        @property
        def size(self):
            return 1

        @staticmethod
        def helper(c):
            """Help.

            With two paragraphs and no section.
            """
            return c

        class Inner:
            def deep(self):
                """Documented."""


    class _Hidden:
        def visible_name_in_private_class(self):
            return 0


    class Bare:
        pass


    if True:
        def in_a_block():
            return 0
''')


def test_the_checker_finds_every_planted_problem_and_nothing_else():
    got = docstring_problems(SYNTHETIC, "synthetic.py", require_parameters=True)
    names = [line.split(" ", 2)[1].rstrip(":") for line in got]
    assert names == [
        "module",                        # no module docstring
        "undocumented",
        "long_without_section",          # rule 2
        "Documented.method",
        "Documented.size",               # properties count
        "Documented.helper",             # rule 2, static method
        "Documented.Inner",              # nested public class
        "Bare",
        "in_a_block",                    # definitions inside if blocks count
    ], got
    assert "x, y" in got[2]
    assert all(line.startswith("synthetic.py:") for line in got)


def test_rule_2_applies_only_when_asked():
    got = docstring_problems(SYNTHETIC, "synthetic.py", require_parameters=False)
    assert not any("Parameters" in line for line in got)
    assert len(got) == 7


def test_a_clean_module_has_no_problems():
    clean = '"""A module."""\n\ndef f(x):\n    """Return x."""\n    return x\n'
    assert docstring_problems(clean, require_parameters=True) == []


# ---------------------------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------------------------

_FILES = sorted(SRC.rglob("*.py"))


def test_the_priority_modules_exist():
    """A renamed module must be renamed here too, or rule 2 would silently stop applying."""
    rels = {p.relative_to(SRC).as_posix() for p in _FILES}
    for m in PARAMETER_MODULES:
        assert (m in rels) if not m.endswith("/") else any(r.startswith(m) for r in rels), m


@pytest.mark.parametrize("path", _FILES, ids=lambda p: p.relative_to(SRC).as_posix())
def test_docstrings(path):
    rel = path.relative_to(SRC).as_posix()
    problems = docstring_problems(path.read_text(encoding="utf-8"), f"src/imsim/{rel}",
                                  require_parameters=_held_to_rule_2(rel))
    assert not problems, "\n".join(problems)
