"""``portlane ocr`` end to end on synthetic images written to a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from portlane.edge.cli import main
from portlane.sim_devices.render import render_container, render_plate


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
    (tmp_path / "labels.csv").write_text(
        "file,text,kind\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows), encoding="utf-8"
    )
    sheet = tmp_path / "sheet.html"
    assert main(["ocr", "eval", str(tmp_path), "--json", "--sheet", str(sheet), "--by-vehicle", "--folds", "2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    ours = rep["engines"]["ours"]
    assert (ours["overall"]["exact"], ours["overall"]["n"], ours["overall"]["accuracy"]) == (3, 4, 0.75)
    assert ours["per_kind"]["cn_yellow"]["exact"] == 0
    # the wrong label is read as what is painted: if that read is confirmed it counts as confidently
    # wrong against this (deliberately wrong) label, otherwise it is just a miss
    assert ours["overall"]["confident_wrong"] == ours["per_kind"]["cn_yellow"]["confident_wrong"]
    assert [m["file"] for m in ours["misses"]] == ["d.png"]
    sheet = Path(ours["contact_sheet"])
    assert sheet.is_file() and "京A9999学" in sheet.read_text(encoding="utf-8")
    assert ours["latency_ms"]["p95"] >= ours["latency_ms"]["p50"] > 0
    assert 50 < ours["peak_rss_mb"] < 2000
    # per vehicle: four labels, four vehicles, each right, sent to an officer, or wrong
    bv = ours["by_vehicle"]
    assert bv["vehicles"] == 4 and bv["confirmed_right"] + bv["needs_officer"] + bv["confirmed_wrong"] == 4
    assert bv["confirmed_wrong"] == (1 if ours["overall"]["confident_wrong"] else 0)
    held = ours["held_out"]
    assert held["folds"] == 2 and sum(held["fold_sizes"]) == 4 and len(held["policies"]) == 2


def test_eval_without_labels_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["ocr", "eval", str(tmp_path)]) == 2


def test_missing_weights_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from portlane.models import manifest

    real = manifest.load_manifest()
    monkeypatch.setattr(manifest, "load_manifest", lambda *a, **k: {**real, "weights_dir": "no-such-folder"})
    f = tmp_path / "p.png"
    cv2.imwrite(str(f), render_plate("粤B12345", "cn_blue", seed=1))
    assert main(["ocr", "plate", str(f)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "weights" in err
