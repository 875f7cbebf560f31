"""The root of Azote's errors, and the one wording of a configuration that does not validate.

Every error class of Azote derives from `AzoteError` (besides its builtin base, so `except ValueError` still
catches a `DatasetError`): the `azote` command turns any of them into one line. This module imports nothing of
Azote, so every package, `gamepad` included, can use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: importing errors must not import pydantic
    from pydantic import ValidationError


class AzoteError(Exception):
    """An error Azote expects and explains in its message: bad input, a missing or unusable file, a failed game."""


def one_line(message: object) -> str:
    """`message` as one line: line breaks and runs of spaces become one space."""
    return " ".join(str(message).split())


def describe_validation_error(exc: ValidationError, source: str, whole: str = "config") -> str:
    """`source: field.path: message; other.field: message` for every problem pydantic found; `whole` names a
    problem that belongs to no field (a model validator's)."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or whole}: {e['msg']}" for e in exc.errors())
    return f"{source}: {problems}"
