"""The static checks, run by CI through the README's test command (issue 9).

Each check runs its tool from the venv (the ``dev`` extra installs them at the versions pinned in
pyproject.toml) as a subprocess; a failure shows the tool's own report. To run one by hand::

    .venv/bin/ruff check .          .venv/bin/ruff format --check .          .venv/bin/lint-imports
    python3 dev.py test tests/project/test_static.py -k mypy      # mypy needs the import root below
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: The venv's scripts: dev.py runs pytest with the venv's interpreter.
BIN = Path(sys.executable).parent
#: The packages held to ``mypy --strict`` (the conventions: edge/, drivers/, models/).
STRICT_PACKAGES = ("portlane.edge", "portlane.drivers", "portlane.models")
#: mypy's cache, and beside it the import root it reads the sources through (see ``import_root``).
MYPY_CACHE = ROOT / ".mypy_cache"
#: A cold mypy run over the three packages takes ~11 s alone on the 2-core reference box, ~2 s
#: with its cache; a loaded CI box may be many times slower.
TOOL_TIMEOUT_S = 300


def _tool(name: str) -> str:
    exe = BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: the dev extra of pyproject.toml installs it (python3 dev.py test)")
    return found


def _run(name: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = subprocess.run(
        [_tool(name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
    )
    return proc.returncode, f"$ {name} {' '.join(args)}  (exit {proc.returncode})\n{proc.stdout}{proc.stderr}"


def test_ruff_check() -> None:
    rc, report = _run("ruff", "check", "--output-format=concise", ".")
    assert rc == 0, report


def test_ruff_format() -> None:
    rc, report = _run("ruff", "format", "--check", ".")
    assert rc == 0, report + "\nrun `.venv/bin/ruff format .` and commit the result"


def _package_dirs() -> dict[str, str]:
    """``portlane.edge`` -> ``edge`` …: the package-dir mapping of pyproject.toml."""
    dirs: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
    return dirs


@pytest.fixture(scope="module")
def import_root() -> Path:
    """A directory holding ``portlane/edge`` -> ``ROOT/edge`` and so on, one symlink per mapped folder.

    The installed ``portlane`` exists only through setuptools' editable import hook (the folders
    are named edge/, drivers/ … not portlane/edge/ …), which mypy cannot use: it finds modules by
    path, it never imports them. The tree is kept in mypy's cache directory (ignored by git, ruff
    and pytest; nothing walks into symlinks) at a fixed place, so that the cache, keyed by path,
    serves the next run.
    """
    base = MYPY_CACHE / "import-root"
    pkg = base / "portlane"
    pkg.mkdir(parents=True, exist_ok=True)
    for name, folder in _package_dirs().items():
        link, target = pkg / name.removeprefix("portlane."), ROOT / folder
        if link.is_symlink() and link.readlink() == target:
            continue
        if link.is_symlink():
            link.unlink()  # a checkout that moved
        link.symlink_to(target, target_is_directory=True)
    return base


@pytest.mark.slow
def test_mypy_strict(import_root: Path) -> None:
    """mypy --strict with the pydantic plugin ([tool.mypy] of pyproject.toml) over edge, drivers
    and models. Modules they import from elsewhere (sim_devices) are read but not reported."""
    packages = [arg for p in STRICT_PACKAGES for arg in ("-p", p)]
    env = {**os.environ, "MYPYPATH": str(import_root)}
    rc, report = _run(
        "mypy",
        f"--config-file={ROOT / 'pyproject.toml'}",
        "--strict",
        "--follow-imports=silent",
        f"--cache-dir={MYPY_CACHE}",
        *packages,
        env=env,
    )
    # report paths as the folders they are in the checkout: edge/lane/daemon.py, not the link tree's
    for name, folder in _package_dirs().items():
        link = import_root / "portlane" / name.removeprefix("portlane.")
        for shown in (str(link), str(link.relative_to(ROOT))):
            report = report.replace(shown + os.sep, folder + "/")
    assert rc == 0, report


def test_import_contracts() -> None:
    """The contracts of [tool.importlinter] in pyproject.toml (layers of edge, what drivers,
    models and simulators may import), all of them checked and kept."""
    rc, report = _run("lint-imports", "--no-logo")
    assert rc == 0, report
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in report, report


def test_every_edge_package_is_in_a_layer() -> None:
    """import-linter checks only the packages a contract names: a package added to edge/ and left
    out of the layers would import anything unchecked."""
    [layers] = [c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.replace(":", "|").split("|")}
    found = {f"portlane.edge.{init.parent.name}" for init in (ROOT / "edge").glob("*/__init__.py")}
    assert found <= named, f"edge packages in no layer of [tool.importlinter] (pyproject.toml): {sorted(found - named)}"
