"""The documents agree with the program and with each other (issue 24): the contract's prose and
schema, the command table and the command names, the documentation list and the docs folder,
and no citation of a document that does not exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from portlane.edge.contract.commands import COMMAND_NAMES

ROOT = Path(__file__).resolve().parents[2]
#: The steering team's documents (/work/shared): cited by name, kept outside the repository.
EXTERNAL_DOCS = {"DESIGN.md", "STYLE.md"}


def test_asyncapi_prose_gives_the_ids_the_schema_and_the_code_use() -> None:
    doc = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text(encoding="utf-8"))
    id_schema = doc["components"]["schemas"]["Envelope"]["properties"]["id"]["description"]
    [pattern] = re.findall(r"\{site\}[^']*", id_schema)
    assert pattern == "{site}/{unit}/{epoch}/{seq}"
    prose = doc["info"]["description"]
    assert re.findall(r"\{site\}/[^')]*", prose) == [pattern]


def test_the_command_table_of_security_md_names_every_command() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    [row] = [line for line in text.splitlines() if line.startswith("| `cmd` |")]
    assert re.findall(r"`([a-z_]+)`", row.split("|")[2]) == list(COMMAND_NAMES)


def test_the_readme_lists_every_document() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^- `(docs/[^`]+)`", readme, re.MULTILINE))
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").iterdir() if p.suffix in (".md", ".yaml")}
    assert docs <= listed, f"README's documentation list lacks {sorted(docs - listed)}"


def test_every_cited_document_exists() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    names = {Path(f).name for f in files if f.endswith(".md")}
    missing = []
    for f in files:
        if not f.endswith((".md", ".py", ".service", ".yaml", ".toml", ".js", ".html")):
            continue
        text = (ROOT / f).read_text(encoding="utf-8", errors="replace")
        for cited in re.findall(r"\b([A-Za-z][A-Za-z0-9_-]*\.md)\b", text):
            if cited not in names and cited not in EXTERNAL_DOCS:
                missing.append(f"{f}: {cited}")
    assert missing == []
