"""Confirmed wrong reads on rescaled copies of a labelled folder (issue 22).

    .venv/bin/python bench/rescaled_copies.py /work/shared/data/plates            # the 14 copies below
    .venv/bin/python bench/rescaled_copies.py /work/shared/data/containers --copies 0.5q90 0.9q65

Every image is read by the shipped reader (plates, or containers if every label is a container)
as copies at other scales and JPEG qualities (``province_evidence.copy_of``:
``SCALE[qQUALITY][bSIGMA]``; the default, ×0.5 … ×1.25 at q90 and q65, are scales the degraded
copies of docs/recognition.md do not take). A detector boxes a scene differently at each scale,
so a rule measured at one scale can meet a box it never saw: this is a search for confirmed
wrong reads, not an accuracy figure. Per copy and in all: exact (the main label among the
reads), confirmed right, confirmed wrong (a confirmed read that is none of the image's labels),
each confirmed wrong read listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
from portlane.models.evaluation import labels_of, load_labels, read_text
from portlane.models.grammar import CONFIRMED
from portlane.models.onnx_ocr import OcrEngine
from portlane.models.pipeline import ContainerReader, PlateReader
from province_evidence import copy_of

COPIES = [f"{s}q{q}" for s in ("0.5", "0.6", "0.7", "0.8", "0.9", "1.1", "1.25") for q in (90, 65)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("dir", type=Path, help="a labelled folder (labels.csv as in ../shared/data)")
    ap.add_argument("--copies", nargs="+", default=COPIES, help="SCALE[qQUALITY][bSIGMA] each")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads per model")
    ap.add_argument("--json", type=Path, default=None, help="also write every copy's reads here")
    a = ap.parse_args()
    rows = load_labels(a.dir)
    engine = OcrEngine(threads=a.threads)
    containers = all(r["kind"].startswith("container") for r in rows)
    reader = ContainerReader(engine) if containers else PlateReader(engine)
    totals = {c: [0, 0, 0] for c in a.copies}  # exact, confirmed right, confirmed wrong
    out: list[dict[str, Any]] = []
    for row in rows:
        original = cv2.imread(str(a.dir / row["file"]))
        if original is None:
            continue
        labels = labels_of(row)
        for c in a.copies:
            reads = reader.read(copy_of(original, c))
            texts = [(read_text(r), r.status) for r in reads]
            wrong = [t for t, s in texts if s == CONFIRMED and t not in labels]
            totals[c][0] += any(t == labels[0] for t, _s in texts)
            totals[c][1] += any(t == labels[0] and s == CONFIRMED for t, s in texts)
            totals[c][2] += bool(wrong)
            out.append({"file": row["file"], "copy": c, "reads": [list(x) for x in texts]})
            if wrong:
                print(f"{row['file']} {c}: confirmed wrong {wrong} (labels {labels})", flush=True)
    print(f"{a.dir} ({len(rows)} images): copy, exact, confirmed right, confirmed wrong")
    for c, (e, r, w) in totals.items():
        print(f"  {c:8} {e:5} {r:5} {w:5}")
    e, r, w = (sum(t[k] for t in totals.values()) for k in range(3))
    print(f"  {'all':8} {e:5} {r:5} {w:5}  ({len(out)} copies)")
    if a.json:
        a.json.write_text(json.dumps(out, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
