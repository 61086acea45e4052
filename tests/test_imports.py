"""The core's layering, read from the source with ``ast`` (issue 29: one definition per concept):

* no module imports, directly or through others, a module that imports it back: the graph of every
  ``import`` in ``src/volumelab`` (those inside functions included) has no cycle, between modules or
  between subpackages;
* ``volumelab.optimizers`` imports nothing of ``volumelab.diagnostics`` (the NTK of a GD run is an
  observer passed in, :class:`volumelab.diagnostics.ntk.NTKLaziness`);
* no code compares a model family's name or probes a model for an attribute: a family declares its
  :class:`~volumelab.models.Capabilities` and the optional parts default on ``LayeredModel``; the command
  line builds ``--model`` and the model options from the registered families.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "volumelab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``volumelab`` that ``path`` imports anywhere (a package's ``__init__`` counts as the
    package; importing a module's own ancestor package is not an edge: it is loaded first anyway)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
            found.update(submodules if len(submodules) == len(node.names) else [target, *submodules])
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {target for target in found
            if target in modules and target != name and not name.startswith(target + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the walk sees the package
    assert _cycles(graph) == []


def test_no_subpackage_imports_itself_through_others():
    """The same at the level of subpackages (``volumelab.evidence`` and ``volumelab.experiments`` imported
    each other before the verdict roles moved to ``volumelab.evidence.roles``)."""
    modules = _modules()
    packages: dict[str, set[str]] = {}
    for name, path in modules.items():
        top = ".".join(name.split(".")[:2])
        packages.setdefault(top, set()).update(".".join(t.split(".")[:2]) for t in _imports(path, modules))
    graph = {name: targets - {name} for name, targets in packages.items()}
    assert _cycles(graph) == []


def test_optimizers_do_not_import_diagnostics():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("volumelab.optimizers"):
            imported = _imports(path, modules)
            assert not [m for m in imported if m.startswith("volumelab.diagnostics")], name


#: A family's name compared (``model.family == "mlp"``), or a model, problem, task or method's settings probed
#: for an attribute (a capability is declared, never probed).
FAMILY_NAME = re.compile(r"\bfamily\s*[!=]=|[!=]=\s*\w*\.?family\b|\.family\s+(not\s+)?in\b")
PROBE = re.compile(r"\b(getattr|hasattr)\(\s*(self\.)?(model|problem|tensors|settings)\s*,\s*[\"']")


def test_no_family_name_comparison_or_model_attribute_probe():
    assert FAMILY_NAME.search('if model.family == "factorization":') and PROBE.search('getattr(model, "x", None)')
    assert PROBE.search('getattr(problem, "task", None)') and PROBE.search('getattr(settings, "device", None)')
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if FAMILY_NAME.search(code) or PROBE.search(code):
                offenders.append(f"{path.relative_to(SOURCE)}:{number}: {line.strip()}")
    assert offenders == []
