"""``portlane ocr`` end to end on synthetic images written to a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from portlane.edge.cli import main
from portlane.sim_devices.render import render_container, render_plate

pytest.importorskip("rapidocr_onnxruntime")


def test_plate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "p.png"
    cv2.imwrite(str(f), render_plate("粤ZA123港", "cn_crossborder", seed=1))
    assert main(["ocr", "plate", str(f), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out.strip())
    assert obj["file"] == str(f) and obj["ms"] > 0
    [p] = obj["plates"]
    assert p["text"] == "粤ZA123港" and p["kind"] == "cn_crossborder" and len(p["box"]) == 4


def test_container_json_and_bad_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.png"
    cv2.imwrite(str(f), render_container("CSQU3054383", "split", size_type="45G1", seed=2))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert main(["ocr", "container", str(f), str(bad), "--json"]) == 1
    out, err = capsys.readouterr()
    [c] = json.loads(out.strip())["containers"]
    assert c["number"] == "CSQU3054383" and c["check_digit_ok"] and c["iso_type"] == "45G1"
    assert "bad.jpg" in err


@pytest.mark.slow
def test_eval_reports_accuracy_latency_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [("a.png", "粤B12345", "cn_blue"), ("b.png", "AB1234", "hk"), ("c.png", "MX1234", "macau")]
    styles = {"cn_blue": "cn_blue", "hk": "hk", "macau": "macau"}
    for name, text, kind in rows:
        cv2.imwrite(str(tmp_path / name), render_plate(text, styles[kind], seed=3))
    cv2.imwrite(str(tmp_path / "d.png"), render_plate("京A1234学", "cn_yellow", seed=4))
    rows.append(("d.png", "京A9999学", "cn_yellow"))  # wrong on purpose: must count as a miss
    (tmp_path / "labels.csv").write_text("file,text,kind\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows),
                                         encoding="utf-8")
    assert main(["ocr", "eval", str(tmp_path), "--json", "--no-upstream"]) == 0
    rep = json.loads(capsys.readouterr().out)
    ours = rep["engines"]["ours"]
    assert ours["overall"] == {"correct": 3, "n": 4, "accuracy": 0.75}
    assert ours["per_kind"]["cn_yellow"]["correct"] == 0
    assert ours["latency_ms"]["p95"] >= ours["latency_ms"]["p50"] > 0
    assert 50 < ours["peak_rss_mb"] < 2000


def test_eval_without_labels_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["ocr", "eval", str(tmp_path)]) == 2
