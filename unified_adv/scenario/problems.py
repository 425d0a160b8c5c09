"""Pydantic's validation errors translated into one line per problem,
``FILE: field.path: message``, with "did you mean" for a mistyped field.

A validator that finds several problems at once joins them into one ``ValueError`` with
:func:`joined`; each is either ``"path: message"`` (a path from the scenario's root) or
:func:`at` (a sub-field of the model being validated). The translation splits them again.
"""

from __future__ import annotations

import reprlib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from unified_adv.errors import Problem, did_you_mean, format_loc

#: Separates the problems of one joined message.
MULTI = "\x1f"
#: Frames the sub-field of a problem made with :func:`at`.
SUB = "\x1e"

Loc = Sequence[str | int]


def at(field: str, message: str) -> str:
    """A message about one sub-field of the model being validated."""
    return f"{SUB}{field}{SUB}{message}"


def joined(problems: Sequence[str]) -> str:
    """Several problems as the one message of a ``ValueError``."""
    return MULTI.join(problems)


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The schema class under ``root`` that holds the field at ``loc`` (for 'did you mean'
    on typos)."""
    cls: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        cls = _first_model(field.annotation)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _first_model(arg)
            if found is not None:
                return found
    return None


def _describe_input(value: Any) -> str:
    """`` (got VALUE)`` for a short value; nothing for a long one (never formatted whole)."""
    if isinstance(value, (dict, list, tuple, set)) and len(value) > 20:
        return ""
    if isinstance(value, (str, bytes)) and len(value) > 60:
        return ""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 80, 80
    text = short.repr(value)
    return f" (got {text})" if len(text) <= 60 and "..." not in text else ""


def problems_from(err: ValidationError, file: str, root: type[BaseModel]) -> list[Problem]:
    """Every error of a validation of ``root``, one :class:`Problem` each."""
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        kind = e["type"]
        if kind == "extra_forbidden":
            parent = model_at(root, loc[:-1])
            allowed = [f.alias or n for n, f in (parent.model_fields.items() if parent else [])]
            problems.append(Problem(file, format_loc(loc), did_you_mean("field", str(loc[-1]), allowed)))
        elif kind == "value_error":
            message = str(e.get("ctx", {}).get("error", e["msg"]))
            problems += message_problems(message, file, loc, root)
        else:
            problems.append(Problem(file, format_loc(loc), _message(e)))
    return problems


def _message(e: Any) -> str:
    """The message of an error pydantic raised itself (not one of our validators)."""
    kind = e["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "greater_than":
        return f"must be > {e['ctx']['gt']}" + _describe_input(e["input"])
    if kind == "greater_than_equal":
        return f"must be >= {e['ctx']['ge']}" + _describe_input(e["input"])
    if kind == "less_than_equal":
        return f"must be <= {e['ctx']['le']}" + _describe_input(e["input"])
    if kind == "literal_error":
        return f"must be one of {e['ctx']['expected']}" + _describe_input(e["input"])
    msg: str = e["msg"]
    return msg[0].lower() + msg[1:] + _describe_input(e["input"])


def message_problems(message: str, file: str, loc: Loc, root: type[BaseModel]) -> list[Problem]:
    """The problems of one validator's message raised at ``loc``: split where
    :func:`joined`, each pointed at its own field."""
    path = format_loc(loc)
    head, sep, rest = message.partition(": ")
    owner = model_at(root, loc)
    if sep and owner is not None and head in owner.model_fields:
        # "field: message" from a model-level check: point at the field itself.
        path, message = (f"{path}.{head}" if path else head), rest
    if MULTI not in message and not message.startswith(SUB):
        return [Problem(file, path, message)]
    problems = []
    for part in message.split(MULTI):
        if part.startswith(SUB):  # relative to the model at `path`
            _, field, sub_msg = part.split(SUB, 2)
            problems.append(Problem(file, f"{path}.{field}" if path else field, sub_msg))
        else:  # an absolute path from the Scenario-level checks
            sub_path, _, sub_msg = part.partition(": ")
            problems.append(Problem(file, sub_path, sub_msg))
    return problems
