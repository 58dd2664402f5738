"""What a source file imports, relative imports resolved (for tests that check which modules
import what outside the import contracts' graph)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path) -> list[str]:
    """Modules ``path`` imports, relative imports resolved (test_console_unit checks which
    modules import aiohttp with it: an external package, outside the import contracts' graph)."""
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
