"""The wheel is all a lane controller needs (issue 24): it carries the systemd units, udev rules
and sysusers file, and ``portlane systemd install`` run from the wheel alone — no repository,
no third-party package — puts them in place. Building it prints no setuptools warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    "portlane/systemd/portlane-lane@.service",
    "portlane/systemd/portlane-scanner@.service",
    "portlane/systemd/portlane-recognition.service",
    "portlane/systemd/portlane-console.service",
    "portlane/systemd/portlane.target",
    "portlane/systemd/99-portlane-serial.rules",
    "portlane/systemd/sysusers.d/portlane.conf",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built offline from a copy of the working tree (never builds inside it), and
    what the build printed."""
    src = tmp_path_factory.mktemp("src")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for rel in listed:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    [whl] = dist.glob("portlane-*.whl")
    return whl, res.stdout + res.stderr


def test_the_build_prints_no_package_would_be_ignored_warnings(wheel: tuple[Path, str]) -> None:
    _whl, output = wheel
    assert "Package would be ignored" not in output


def test_the_wheel_carries_the_system_files_and_the_data(wheel: tuple[Path, str]) -> None:
    whl, _output = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    assert names >= SHIPPED
    assert "portlane/edge/console/static/app.js" in names
    assert "portlane/firmware_config/sites/zhuhai-hzmb-cargo.yaml" in names
    assert any(n.startswith("portlane/models/weights/") and n.endswith(".onnx") for n in names)


def test_systemd_install_from_the_wheel_alone(wheel: tuple[Path, str], tmp_path: Path) -> None:
    whl, _output = wheel
    site = tmp_path / "site-packages"
    zipfile.ZipFile(whl).extractall(site)
    prefix = tmp_path / "root"
    # -S: no site-packages, so neither this checkout (editable install) nor any third-party
    # package is importable; only the wheel's files on sys.path.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from portlane.edge.cli import main; "
        "sys.exit(main(['systemd', 'install', '--prefix', sys.argv[2], '--bin', '/opt/pl/bin/portlane']))"
    )
    run = [sys.executable, "-S", "-c", code, str(site), str(prefix)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    units = prefix / "etc" / "systemd" / "system"
    assert {p.name for p in units.iterdir()} == {Path(n).name for n in SHIPPED if "/sysusers.d/" not in n} - {
        "99-portlane-serial.rules"
    }
    lane = (units / "portlane-lane@.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/pl/bin/portlane daemon lane --site /etc/portlane/site.yaml --lane %i" in lane
    assert (prefix / "etc" / "sysusers.d" / "portlane.conf").read_text(encoding="utf-8").count("portlane") >= 2
    rules = prefix / "etc" / "udev" / "rules.d" / "99-portlane-serial.rules"
    rules.write_text(rules.read_text(encoding="utf-8").replace("GATEC1", "MYADAPTER"), encoding="utf-8")
    again = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "MYADAPTER" in rules.read_text(encoding="utf-8")  # the technician's edit is kept
    assert f"kept      {rules}" in again.stdout
