"""The package listing, and what the gate path and the CLI load at run time.

The import directions (edge's layers; drivers, models and simulators kept apart; simulators
started only by the CLI and the demo) are the contracts of ``[tool.importlinter]`` in
pyproject.toml, checked by tests/project/test_static.py::test_import_contracts.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_importable_folder_is_listed_for_the_wheel() -> None:
    """Every folder Python could import by name — a package, or a folder of data such as
    ``console/static`` — is listed in ``packages``: setuptools warns ("Package would be
    ignored", ~200 lines on each install) about any that is not."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for mapped, folder in cfg["package-dir"].items():
        found.add(mapped)
        for sub in (ROOT / folder).rglob("*"):
            rel = sub.relative_to(ROOT / folder).parts
            if sub.is_dir() and all(p.isidentifier() and p != "__pycache__" for p in rel) and any(sub.iterdir()):
                found.add(".".join([mapped, *rel]))
    assert found == listed


def test_gate_path_and_cli_start_without_heavy_imports() -> None:
    import subprocess

    code = (
        "import sys\n"
        "import portlane.edge.cli as cli, portlane.edge.lane.daemon\n"
        "cli.build_parser()\n"
        "heavy = [m for m in ('cv2', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_exception_of_edge_lives_in_errors_and_is_drawn_in_its_tree() -> None:
    """One error module (issue 19): no other module of edge defines an exception class, and the
    tree in ``edge/errors.py``'s docstring names every class the module exports."""
    import ast

    from portlane.edge import errors

    defined_elsewhere = []
    for path in (ROOT / "edge").rglob("*.py"):
        if path.name == "errors.py" and path.parent.name == "edge":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    defined_elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not defined_elsewhere
    classes = [n for n in errors.__all__ if not n.startswith("EXIT_")]
    assert all(issubclass(getattr(errors, n), errors.PortlaneError) for n in classes)
    doc = errors.__doc__ or ""
    assert [n for n in classes if f"── {n}" not in doc and n != "PortlaneError"] == []
    assert [n for n in errors.__all__ if n.startswith("EXIT_") and n not in doc] == []


def test_every_layer_of_edge_has_a_module_map_naming_each_module() -> None:
    """Each package of edge opens with a map of its modules (``console/__init__.py`` is the
    model): a reader finds the module for a job without opening them all. A module added
    without its line fails here."""
    import ast
    import re

    missing: dict[str, list[str]] = {}
    for init in sorted((ROOT / "edge").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        modules = sorted(p.stem for p in init.parent.glob("*.py") if p.name != "__init__.py")
        absent = [m for m in modules if not re.search(rf"(?<![\w.]){re.escape(m)}(\.py)?\b", doc)]
        if absent:
            missing[init.parent.name] = absent
    assert not missing, f"modules missing from their package's map (the __init__.py docstring): {missing}"
