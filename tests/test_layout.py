"""The architecture's import directions and the package listing, enforced."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# folder -> import roots it must not use
FORBIDDEN = {
    "drivers": ("portlane.edge", "portlane.sim_devices", "portlane.models"),
    "models": ("portlane.edge", "portlane.sim_devices", "portlane.drivers"),
    "sim_devices": ("portlane.edge", "portlane.drivers", "portlane.models"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    pkg = "portlane." + ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                names.append(".".join([*base, node.module or ""]).rstrip("."))
            elif node.module:
                names.append(node.module)
    return names


def test_import_directions() -> None:
    bad = []
    for folder, forbidden in FORBIDDEN.items():
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imports(path):
                if name.startswith(forbidden):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


#: The composition roots that may start simulators: the CLI and the demo. Daemons, lane logic
#: and the contract never import a simulator.
SIM_COMPOSERS = ("edge/cli/", "edge/demo/")


def test_daemons_never_import_simulators() -> None:
    bad = []
    for path in (ROOT / "edge").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(SIM_COMPOSERS):
            continue
        bad += [f"{rel} imports {n}" for n in _imports(path) if n.startswith("portlane.sim_devices")]
    assert not bad, "\n".join(bad)


def test_every_package_is_listed_for_the_wheel() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for mapped, folder in cfg["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
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
