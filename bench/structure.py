"""Structure figures of the package: import cycles, function-level project imports,
modules directly in ``unified_adv/``, and the longest functions.

    python bench/structure.py          # prints the figures
    python bench/structure.py --json   # the same as JSON

Read from the source with ``ast`` (nothing is imported). The package maps
``unified_adv.adapters`` to ``./adapters``; both trees are read. A module-level import is one
at the top of a module or inside ``if TYPE_CHECKING:`` blocks are ignored (they never run).
"""
from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "unified_adv"
TREES = {PACKAGE: ROOT / PACKAGE, f"{PACKAGE}.adapters": ROOT / "adapters"}


@dataclass
class Structure:
    modules: dict[str, Path] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=dict)  # module-level project imports
    late_imports: list[tuple[str, int, str]] = field(default_factory=list)
    late_edges: dict[str, set[str]] = field(default_factory=dict)  # function-level ones
    functions: list[tuple[int, str, str, int]] = field(default_factory=list)  # lines, mod, name, lineno


def _module_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for prefix, tree in TREES.items():
        for path in sorted(tree.rglob("*.py")):
            parts = list(path.relative_to(tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names[".".join([prefix, *parts])] = path
    return names


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = module if is_package else module.rsplit(".", 1)[0]
    for _ in range(max(node.level - 1, 0)):
        base = base.rsplit(".", 1)[0]
    target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def _project_target(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _walk(module: str, tree: ast.AST, s: Structure, is_package: bool) -> None:
    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                targets = {t for n in _resolve(module, child, is_package)
                           if (t := _project_target(n, s.modules)) and t != module}
                # a package importing its own submodules is how packages re-export
                if depth == 0:
                    s.edges.setdefault(module, set()).update(targets)
                elif targets:
                    s.late_imports.append((module, child.lineno, ", ".join(sorted(targets))))
                    s.late_edges.setdefault(module, set()).update(targets)
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                s.functions.append((length, module, child.name, child.lineno))
            is_scope = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, depth + 1 if is_scope else depth)
    visit(tree, 0)


def measure() -> Structure:
    s = Structure(modules=_module_names())
    for module, path in s.modules.items():
        _walk(module, ast.parse(path.read_text(), str(path)), s, path.name == "__init__.py")
    return s


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def _package_edges(s: Structure) -> dict[str, set[str]]:
    """Every import, module- or function-level (a cycle dodged by a late import is still a
    cycle), with a package's import of its own submodules left out (re-exports)."""
    edges: dict[str, set[str]] = {}
    for source in (s.edges, s.late_edges):
        for m, ts in source.items():
            edges.setdefault(m, set()).update(t for t in ts if not t.startswith(m + "."))
    return edges


def figures() -> dict:
    s = measure()
    top = [m for m, p in s.modules.items() if p.parent == TREES[PACKAGE] and p.name != "__init__.py"]
    longest = sorted(s.functions, reverse=True)
    return {
        "cycles": cycles(_package_edges(s)),
        "function_level_imports": [f"{m}:{line} -> {t}" for m, line, t in s.late_imports],
        "top_level_modules": sorted(top),
        "functions_over_80": [f"{m}.{n}:{line} ({k} lines)" for k, m, n, line in longest if k > 80],
        "longest_function": f"{longest[0][1]}.{longest[0][2]} ({longest[0][0]} lines)",
        "modules": len(s.modules),
    }


def main() -> None:
    f = figures()
    if "--json" in sys.argv:
        print(json.dumps(f, indent=1))
        return
    print(f"modules: {f['modules']}, directly in {PACKAGE}/: {len(f['top_level_modules'])}")
    print(f"import cycles: {len(f['cycles'])}")
    for c in f["cycles"]:
        print("   ", " <-> ".join(c))
    print(f"function-level imports of project modules: {len(f['function_level_imports'])}")
    print(f"functions over 80 lines: {len(f['functions_over_80'])}; longest {f['longest_function']}")
    for line in f["functions_over_80"]:
        print("   ", line)


if __name__ == "__main__":
    main()
