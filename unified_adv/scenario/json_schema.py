"""The scenario's JSON schema, for editor completion and checking as you type.

Generated from the pydantic models (``Scenario.model_json_schema()``), then widened where
the loader takes more than the models' types say: a number may be written as a fraction
(``8/255``), ``eps`` and ``backends`` as one value instead of a list, ``target`` as a
shorthand (``random``, ``{least_likely: 5}``). The shipped copy, ``scenario.schema.json``
next to this file, is regenerated with ``python -m unified_adv.scenario.json_schema``
(a test checks that it equals what this module generates). ``unified-adv schema`` prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from unified_adv.scenario.schema import Scenario

__all__ = ["SCHEMA_FILE", "schema_text", "scenario_json_schema"]

SCHEMA_FILE = Path(__file__).with_name("scenario.schema.json")
#: A number written as text: a fraction such as 8/255, or a decimal.
FRACTION = r"^\s*[-+]?\d+(\.\d*)?(\s*/\s*\d+(\.\d*)?)?\s*$"
#: Fields whose loader takes one value for a one-item list.
ONE_OR_MANY = ("eps", "backends")
TARGET_SHORTHANDS = ["untargeted", "least_likely", "random", "each_other_class"]


def _widen(node: Any) -> Any:
    """Numbers may be fractions; eps and backends one value or a list (recursively)."""
    if isinstance(node, list):
        return [_widen(v) for v in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "number":
        rest = {k: v for k, v in node.items() if k != "type"}
        return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": FRACTION}], **rest}
    out = {k: _widen(v) for k, v in node.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        for name in ONE_OR_MANY:
            if name in props:
                props[name] = _one_or_many(props[name])
        if "target" in props:
            props["target"] = {
                "anyOf": [
                    {"$ref": "#/$defs/TargetSpec"},
                    {"type": "string", "enum": TARGET_SHORTHANDS},
                    {
                        "type": "object",
                        "properties": {"least_likely": {"type": "integer", "minimum": 2}},
                        "required": ["least_likely"],
                        "additionalProperties": False,
                    },
                ],
                "description": "untargeted (default), random, least_likely, "
                "each_other_class, {class: K} or {least_likely: K}",
            }
    return out


def _one_or_many(prop: dict[str, Any]) -> dict[str, Any]:
    """An array property (or array-or-null) that also takes one item."""
    options = prop.get("anyOf", [prop])
    extra = [o["items"] for o in options if isinstance(o, dict) and o.get("type") == "array"]
    keep = {k: v for k, v in prop.items() if k in ("default", "title", "description")}
    arrays = [{k: v for k, v in o.items() if k not in ("default", "title")} for o in options]
    return {"anyOf": [*arrays, *extra], **keep}


def scenario_json_schema() -> dict[str, Any]:
    """The scenario's JSON schema (draft 2020-12), as shipped."""
    schema = _widen(Scenario.model_json_schema(by_alias=True))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "unified-adv scenario",
        **schema,
    }


def schema_text() -> str:
    """The schema as the shipped file holds it (sorted keys, two-space indent)."""
    return json.dumps(scenario_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    """Rewrite the shipped ``scenario.schema.json``; ``--check`` only compares (exit 1)."""
    text = schema_text()
    if "--check" in sys.argv[1:]:
        same = SCHEMA_FILE.is_file() and SCHEMA_FILE.read_text(encoding="utf-8") == text
        print(f"{SCHEMA_FILE.name}: {'up to date' if same else 'stale'}", file=sys.stderr)
        return 0 if same else 1
    SCHEMA_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
