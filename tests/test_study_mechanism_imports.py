"""The study mechanism's import rules (issue 28), read from the source with ``ast``:

* no study module (``src/volumelab/studies/*.py``) imports a private name (leading underscore) of another
  studies module, nor uses one through an imported studies module (``ngd._combine``), and none imports
  anything from ``volumelab.plotting.report`` (studies register themselves; the report reads them);
* no module under ``src/volumelab/plotting`` imports ``volumelab.studies`` (absolute or relative imports,
  ``from volumelab import studies``, or ``importlib.import_module("volumelab.studies...")``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
STUDIES = "volumelab.studies"
REPORT = "volumelab.plotting.report"
STUDY_FILES = sorted((SOURCE / "volumelab" / "studies").glob("*.py"))
PLOTTING_FILES = sorted((SOURCE / "volumelab" / "plotting").rglob("*.py"))


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: Path, root: Path) -> str:
    module = _module_name(path, root)
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imported_module(path: Path, root: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from (``path`` lies under the source ``root``)."""
    if not node.level:
        return node.module or ""
    base = _package(path, root).split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path, root: Path):
    """``(line, module, name)`` of every import in ``path``: ``name`` is ``None`` for ``import module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            module = _imported_module(path, root, node)
            for alias in node.names:
                yield node.lineno, module, alias.name


def _study_violations(path: Path, root: Path = SOURCE) -> list[str]:
    own = _module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems, studies_modules = [], {}
    for line, module, name in _imports(path, root):
        full = f"{module}.{name}" if name else module
        if _within(module, REPORT) or _within(full, REPORT):
            problems.append(f"line {line}: imports {full} (studies must not import volumelab.plotting.report)")
            continue
        if not _within(module, STUDIES) or module == own:
            continue
        if name is not None and _private(name):
            problems.append(f"line {line}: imports the private name {name} from {module}")
        elif name is not None and module == STUDIES:
            studies_modules[name] = f"{STUDIES}.{name}"  # ``from . import ngd``: a studies module
    # ``from . import ngd as n`` then ``n._combine``: a private name of another study module, by attribute.
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _imported_module(path, root, node) == STUDIES:
            for alias in node.names:
                if alias.name in studies_modules:
                    aliases[alias.asname or alias.name] = studies_modules[alias.name]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _within(alias.name, STUDIES) and alias.name != own and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and aliases[node.value.id] != own and _private(node.attr)):
            problems.append(f"line {node.lineno}: uses the private name {node.attr} of {aliases[node.value.id]}")
    return problems


def _plotting_violations(path: Path, root: Path = SOURCE) -> list[str]:
    problems = []
    for line, module, name in _imports(path, root):
        full = f"{module}.{name}" if name else module
        if _within(module, STUDIES) or _within(full, STUDIES):
            problems.append(f"line {line}: imports {full}")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            target = node.args[0].value
            if function in ("import_module", "__import__") and isinstance(target, str) and _within(target, STUDIES):
                problems.append(f"line {node.lineno}: {function}({target!r})")
    return problems


def _id(path: Path) -> str:
    return str(path.relative_to(SOURCE))


def test_the_rules_see_the_files():
    assert len(STUDY_FILES) >= 2 and len(PLOTTING_FILES) >= 2


def test_the_checks_catch_what_they_forbid(tmp_path):
    # A fake tree that breaks every rule once, so the checks are known to bite.
    studies = tmp_path / "volumelab" / "studies"
    plotting = tmp_path / "volumelab" / "plotting" / "report"
    studies.mkdir(parents=True)
    plotting.mkdir(parents=True)
    (studies / "bad.py").write_text(
        "from .other import _helper, public\n"
        "from ..plotting.report.verdicts import judge\n"
        "from . import other as o\n"
        "import volumelab.plotting.report\n"
        "def f():\n    return o._private()\n", encoding="utf-8")
    (plotting / "builder.py").write_text(
        "from ...studies import judge_study\n"
        "from ... import studies\n"
        "import volumelab.studies.tensor\n"
        "import importlib\nimportlib.import_module('volumelab.studies')\n", encoding="utf-8")
    bad = _study_violations(studies / "bad.py", tmp_path)
    builder = _plotting_violations(plotting / "builder.py", tmp_path)
    assert len(bad) == 4 and any("_helper" in p for p in bad) and any("_private" in p for p in bad)
    assert sum("plotting.report" in p for p in bad) == 2
    assert len(builder) == 4


@pytest.mark.parametrize("path", STUDY_FILES, ids=_id)
def test_no_study_module_imports_another_ones_private_names_or_the_report(path):
    problems = _study_violations(path)
    assert not problems, f"{_id(path)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", PLOTTING_FILES, ids=_id)
def test_plotting_does_not_import_studies(path):
    problems = _plotting_violations(path)
    assert not problems, f"{_id(path)}:\n  " + "\n  ".join(problems)
