"""User-facing errors: one line per problem, naming the file and the field.

Anything the user can get wrong (YAML, schema, files, shapes, unsupported
combinations) is raised as :class:`InputError`; the CLI prints its lines and
exits with code 2. Everything else is a bug in unified-adv or a backend.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EXIT_FAILURE = 1
EXIT_INPUT = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class InputError(Exception):
    """Bad user input; carries every problem found, one line each."""

    def __init__(self, problems: Sequence[Problem]):
        if not problems:
            raise ValueError("InputError needs at least one problem")
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def one(cls, file: str, path: str, message: str) -> InputError:
        return cls([Problem(file, path, message)])


def format_loc(loc: Iterable[str | int]) -> str:
    """('attacks', 2, 'eps') -> 'attacks[2].eps'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(kind: str, given: str, available: Iterable[str]) -> str:
    """lm-eval style: "Unknown attack 'fgms'. Did you mean 'fgsm'? Available: ..."."""
    options = sorted(available)
    close = difflib.get_close_matches(given, options, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} '{given}'.{hint} Available: {', '.join(options)}"
