#!/usr/bin/env python3
"""The layering check: imports inside ``edgestate/`` point one way, down.

    python scripts/check_layers.py [PACKAGE_DIR]

Reads every module's imports with ``ast`` (nothing is imported or run), module
level, ``TYPE_CHECKING`` blocks and imports inside functions alike: a lazy
import of a higher layer is still a dependency on it. Fails (exit 1, one line
per finding) when

- a layer imports one it may not (``LAYERS`` below: store < host < runtime <
  node; store < sync < node; client, devkit, authoring and cli on top);
- a package reaches into the private modules of the store or the error tree:
  everything the others need is exported from ``edgestate.store`` and
  ``edgestate.errors`` themselves;
- any module imports a name or module starting with ``_`` from another package;
- the module-level imports (``TYPE_CHECKING`` ones included) form a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = "edgestate"
# Each layer and the layers it may import. The error tree (the package ``errors``),
# the top-level modules ``files`` and ``jsonstrict`` (and the package ``__init__``,
# which holds only the version) sit beneath everything.
BASE = frozenset({"errors", "files", "jsonstrict", ""})
LAYERS: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "files": frozenset({"errors"}),
    "jsonstrict": frozenset({"errors"}),
    "": frozenset(),
    "store": BASE,
    "host": BASE | {"store"},
    "runtime": BASE | {"store", "host"},
    "sync": BASE | {"store"},
    "guest": BASE,
    "node": BASE | {"store", "host", "runtime", "sync", "guest"},
    "client": BASE | {"store"},
    "devkit": BASE | {"store", "host", "runtime", "sync", "guest", "node", "client"},
    # Module authoring (new / build / dev): on top, beside devkit, which it uses.
    "authoring": BASE | {"store", "host", "runtime", "sync", "guest", "node", "client", "devkit"},
    "cli": BASE
    | {"store", "host", "runtime", "sync", "guest", "node", "client", "devkit", "authoring"},
}
# Packages whose submodules are private to them: import the package itself.
SEALED = frozenset({"store", "errors"})


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, as seen in ``module``."""

    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # for ``from X import a, b``
    line: int
    top_level: bool  # at module level (TYPE_CHECKING blocks count), not in a function


def module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package_dir: Path) -> Iterator[Import]:
    module = module_name(path, package_dir)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(inner) for inner in ast.walk(node) if inner is not node)
    for node in ast.walk(tree):
        top = id(node) not in in_function
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, (), node.lineno, top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield Import(module, target, tuple(a.name for a in node.names), node.lineno, top)


def layer_of(dotted: str) -> str | None:
    """``edgestate.sync.daemon`` -> ``sync``; None outside the package."""
    parts = dotted.split(".")
    if parts[0] != ROOT:
        return None
    return parts[1] if len(parts) > 1 else ""


def check(package_dir: Path) -> list[str]:
    """Every finding, as ``file:line: what is wrong``."""
    findings: list[str] = []
    modules = {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own = layer_of(name)
        assert own is not None
        if own not in LAYERS:
            findings.append(f"{path}:1: package {own!r} has no place in LAYERS")
            continue
        for imp in imports_of(path, package_dir):
            target = layer_of(imp.target)
            if target is None:
                continue
            where = f"{path}:{imp.line}"
            # ``from edgestate import errors`` names a module; ``__version__`` does not.
            named = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in modules]
            wanted = {layer_of(m) or "" for m in named} if target == "" and named else {target}
            for layer in wanted - {own}:
                if layer not in LAYERS[own]:
                    findings.append(
                        f"{where}: layer {own or ROOT!r} imports {imp.target} "
                        f"(layer {layer!r}): a lower layer never imports a higher one"
                    )
            if target != own and target in SEALED and imp.target != f"{ROOT}.{target}":
                findings.append(
                    f"{where}: {imp.target} is private to {ROOT}.{target}; import what "
                    f"is needed from {ROOT}.{target} (export it there)"
                )
            if target != own:
                private = [
                    p for p in imp.target.split(".") if p.startswith("_") and p != "__init__"
                ]
                private += [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
                if private:
                    findings.append(
                        f"{where}: imports private {', '.join(private)} from another package"
                    )
            if imp.top_level:
                dep = imp.target
                candidates = [f"{dep}.{n}" for n in imp.names] + [dep]
                for cand in candidates:
                    if cand in graph and cand != name:
                        graph[name].add(cand)
                        break
    findings.extend(cycles(graph, modules))
    return findings


def cycles(graph: dict[str, set[str]], modules: dict[str, Path]) -> list[str]:
    """One finding per import cycle among module-level imports."""
    # A package's __init__ importing its own submodules is how re-exports work,
    # and a submodule importing a sibling runs that __init__ first: that edge
    # (submodule -> own package) is not a cycle of concepts, so it is left out.
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    out: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                loop = [*stack[stack.index(dep) :], dep]
                out.append(f"{modules[node]}:1: import cycle: {' -> '.join(loop)}")
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return out


def main() -> int:
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / ROOT
    findings = check(package_dir.resolve())
    for finding in findings:
        print(finding)
    if findings:
        print(f"layering check: {len(findings)} problem(s)", file=sys.stderr)
        return 1
    print("layering check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
