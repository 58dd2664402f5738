"""The model manifest: where each ONNX file comes from, and a loader that refuses tampered files.

The weights are the PP-OCRv4 det/rec ONNX files (Apache-2.0, PaddleOCR; ONNX conversion by
RapidOCR, from ``rapidocr-onnxruntime==1.4.4``), with their elementwise chains folded into the
convolutions by ``fold_weights.py`` (the same function, about a third less time; the manifest
records each upstream file's sha256 under ``derived_from``). They ship *inside this
package*, in ``models/weights/`` with their licence and NOTICE, and are found with
``importlib.resources``: a plain ``pip install`` of the wheel has working OCR, nothing is ever
downloaded, and no second package (whose dependencies would pull the GUI build of OpenCV) is
needed. The sha256 of each file is pinned in ``manifest.json`` and checked before a session is
created.

Exceptions::

    ModelError
     ├── ModelMissingError   the package or file is not installed
     └── ModelHashError      the file's sha256 differs from models/manifest.json
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelError", "ModelHashError", "ModelMissingError", "ModelSpec", "load_manifest", "resolve", "sha256_file"]

MANIFEST_PATH = Path(__file__).with_name("manifest.json")


class ModelError(RuntimeError):
    """A model file cannot be used."""


class ModelMissingError(ModelError, FileNotFoundError):
    """The model file is not installed (a source tree or wheel built without ``models/weights``)."""


class ModelHashError(ModelError):
    """The model file is not the one the manifest names."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    file: str
    sha256: str
    licence: str
    source: str
    input: dict[str, Any]


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def spec(name: str, manifest: dict[str, Any] | None = None) -> ModelSpec:
    m = manifest or load_manifest()
    entry = m["models"][name]
    return ModelSpec(
        name=name,
        file=entry["file"],
        sha256=entry["sha256"],
        licence=entry["licence"],
        source=f"{m['origin_package']}=={m['origin_package_version']}:{entry['origin_path']}",
        input=entry["input"],
    )


def package_model_dir(manifest: dict[str, Any] | None = None) -> Path:
    """The ``weights`` folder inside the installed ``portlane.models`` package.

    Wheels and editable installs are plain directories, so the traversable is a real path that
    onnxruntime can open; a zipped install is not supported (onnxruntime needs a file).
    """
    m = manifest or load_manifest()
    root = importlib.resources.files(__package__ or "portlane.models") / m["weights_dir"]
    path = Path(str(root))
    if not path.is_dir():
        raise ModelMissingError(
            f"OCR weights folder {path} is not installed; reinstall portlane from a wheel or source tree "
            "that includes models/weights"
        )
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(name: str, *, model_dir: Path | None = None, manifest: dict[str, Any] | None = None) -> Path:
    """Path of model ``name`` ("det" or "rec") after checking its sha256 against the manifest.

    ``model_dir`` overrides the installed package location (tests point it at a tampered copy).
    """
    m = manifest or load_manifest()
    s = spec(name, m)
    path = (model_dir or package_model_dir(m)) / s.file
    if not path.is_file():
        raise ModelMissingError(f"model {name!r}: file {path} is missing (expected from {s.source})")
    digest = sha256_file(path)
    if digest != s.sha256:
        raise ModelHashError(
            f"model {name!r}: {path} has sha256 {digest}, manifest says {s.sha256} ({s.source}); "
            "refusing to load a file that is not the audited one"
        )
    return path
