"""Reading a scenario: the file (a regular file, bounded size, UTF-8), its YAML (the safe
loader, unique keys, bounded depth and expansion), then the schema and the checks.

Every problem is reported as ``FILE: field.path: message`` through
:class:`~unified_adv.errors.InputError`; nothing here runs user code.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unified_adv.errors import InputError
from unified_adv.scenario.checks import scenario_problems
from unified_adv.scenario.problems import joined, message_problems, problems_from
from unified_adv.scenario.schema import IN_MEMORY, Scenario


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first given at line {seen[key].line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

#: Hostile YAML: a scenario nests a few levels and holds a few hundred values. Deeper
#: nesting, or more values once aliases (*ref) are expanded (a "billion laughs" file expands
#: 90 aliases into 10^9 values), is refused while composing, before anything is expanded.
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000
#: A scenario file is at most this many bytes (read no further).
MAX_SCENARIO_BYTES = 2**20


class _TooLarge(yaml.MarkedYAMLError):
    """The document nests too deeply or expands to too many values."""


def _compose_node(self: Any, parent: Any, index: Any) -> Any:
    """``Composer.compose_node`` with a depth limit and a count of values in which an alias
    counts as every value it stands for."""
    event = self.peek_event()
    if isinstance(event, yaml.AliasEvent):
        node = _COMPOSE(self, parent, index)
        _count_nodes(self, self._anchor_sizes.get(event.anchor, 1), event)
        return node
    self._depth += 1
    if self._depth > MAX_YAML_DEPTH:
        raise _TooLarge(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
    before = self._nodes
    _count_nodes(self, 1, event)
    node = _COMPOSE(self, parent, index)
    self._depth -= 1
    if event.anchor is not None:
        self._anchor_sizes[event.anchor] = self._nodes - before
    return node


def _count_nodes(self: Any, n: int, event: Any) -> None:
    self._nodes += n
    if self._nodes > MAX_YAML_NODES:
        raise _TooLarge(
            None,
            None,
            f"more than {MAX_YAML_NODES} values once aliases are expanded",
            event.start_mark,
        )


_COMPOSE = yaml.composer.Composer.compose_node


class _SafeScenarioLoader(_UniqueKeyLoader):
    """The loader for scenarios: unique keys, bounded depth and size."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._anchor_sizes: dict[str, int] = {}

    compose_node = _compose_node


def scenario_from_text(
    text: str,
    file: str = "<scenario>",
    base_dir: Path | None = None,
    *,
    in_memory: frozenset[str] = frozenset(),
    model_defaults: dict[str, Any] | None = None,
) -> Scenario:
    """Parse and validate scenario YAML; raises InputError listing every problem.

    ``in_memory``: the sections (``"model"``, ``"data"``) whose source the caller holds as
    an object (the notebook API): they name no file or builtin, and may be left out.
    ``model_defaults``: values for ``model`` fields the text leaves out (the notebook API's
    input range read off in-memory data), validated as if written."""
    if len(text) > MAX_SCENARIO_BYTES:
        raise InputError.one(
            file, "", f"is {len(text)} characters long; a scenario is at most {MAX_SCENARIO_BYTES}"
        )
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError.one(file, "", f"holds a NUL byte (line {line}): not a YAML text file")
    try:
        data = yaml.load(text, Loader=_SafeScenarioLoader)  # noqa: S506 - a SafeLoader subclass
    except _TooLarge as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError.one(file, "", f"YAML too large{where}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError.one(file, "", f"YAML syntax error{where}: {exc.problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InputError.one(
            file, "", f"YAML syntax error at line {line}: {exc.reason} ({exc.character!r})"
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[:1]
        raise InputError.one(file, "", f"YAML syntax error: {first[0] if first else ''}") from None
    except RecursionError:  # a construct the depth limit does not see: refused all the same
        raise InputError.one(file, "", "YAML too large: nested too deeply") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise InputError.one(
            file, "", f"top level must be a mapping with name, model, data, attacks; got {got}"
        )
    for section in in_memory:
        if data.get(section) is None:
            data[section] = {}
    if model_defaults and isinstance(data.get("model"), dict):
        data["model"] = {**model_defaults, **data["model"]}
    return _validated(data, file, in_memory).record_source(
        file, text, base_dir if base_dir is not None else Path.cwd()
    )


def _validated(
    data: dict[Any, Any], file: str, in_memory: frozenset[str] = frozenset()
) -> Scenario:
    """Each section against the schema, then the checks across sections."""
    try:
        scenario = Scenario.model_validate(data, context={IN_MEMORY: in_memory})
    except ValidationError as exc:
        raise InputError(problems_from(exc, file, Scenario)) from None
    problems = scenario_problems(scenario)
    if problems:
        raise InputError(message_problems(joined(problems), file, (), Scenario))
    return scenario


def load_scenario(
    path: str | Path,
    *,
    in_memory: frozenset[str] = frozenset(),
    model_defaults: dict[str, Any] | None = None,
) -> Scenario:
    """Read a scenario file. Relative paths inside it resolve against its folder.
    ``in_memory``, ``model_defaults``: as for :func:`scenario_from_text`."""
    p = Path(path)
    try:
        text = _read_scenario(p)
    except FileNotFoundError:
        raise InputError.one(str(path), "", "scenario file not found") from None
    except IsADirectoryError:
        raise InputError.one(str(path), "", "is a folder, expected a YAML scenario file") from None
    except ValueError as exc:  # an embedded NUL in the path itself
        if isinstance(exc, UnicodeDecodeError):
            raise InputError.one(
                str(path), "", f"not UTF-8 text (byte {exc.start}: {exc.reason})"
            ) from None
        raise InputError.one(repr(str(path)), "", f"not a usable path ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError.one(
            str(path), "", f"not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    except OSError as exc:
        raise InputError.one(
            str(path), "", f"cannot read scenario: {exc.strerror or exc}"
        ) from None
    return scenario_from_text(
        text,
        file=str(path),
        base_dir=p.resolve().parent,
        in_memory=in_memory,
        model_defaults=model_defaults,
    )


def _read_scenario(p: Path) -> str:
    """A regular file's text, at most MAX_SCENARIO_BYTES; a FIFO or device is never opened
    (opening a FIFO blocks until someone writes to it)."""
    st = p.stat()
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError.one(
            str(p), "", "not a regular file (a pipe, socket or device); give a YAML file"
        )
    if st.st_size > MAX_SCENARIO_BYTES:
        raise InputError.one(
            str(p), "", f"is {st.st_size} bytes; a scenario file is at most {MAX_SCENARIO_BYTES}"
        )
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_SCENARIO_BYTES + 1)
    if len(raw) > MAX_SCENARIO_BYTES:
        raise InputError.one(
            str(p), "", f"is over {MAX_SCENARIO_BYTES} bytes; a scenario file is at most that"
        )
    return raw.decode("utf-8")
