"""The lane's fusion of recognition reads across frames (edge/recognition.py)."""

from __future__ import annotations

import sys

from portlane.edge.lane.recognition import fuse_reads


def test_dual_plates_are_kept_as_a_pair_and_agreement_sets_confidence() -> None:
    frames = [
        [{"text": "粤ZAB12港", "kind": "cn_crossborder", "confidence": 0.95},
         {"text": "AB1234", "kind": "hk", "confidence": 0.9}],
        [{"text": "粤ZAB12港", "kind": "cn_crossborder", "confidence": 0.93},
         {"text": "AB1284", "kind": "hk", "confidence": 0.6}],
    ]
    out = fuse_reads("plate", frames)
    assert [r["text"] for r in out] == ["粤ZAB12港", "AB1234"]
    assert out[0]["confidence"] == 0.95  # both frames agree
    assert 0.6 < out[1]["confidence"] < 0.9  # one frame disagreed


def test_containers_whose_check_digit_failed_never_vote() -> None:
    frames = [[{"number": "CSQU3054383", "check_digit_ok": True, "confidence": 0.8},
               {"number": "CSQU3054384", "check_digit_ok": False, "confidence": 0.99}]]
    assert [r["number"] for r in fuse_reads("container", frames)] == ["CSQU3054383"]


def test_confidences_stay_probabilities() -> None:
    frames = [[{"text": "粤B12345", "kind": "cn", "confidence": 1.0}]]
    assert fuse_reads("plate", frames)[0]["confidence"] <= 1.0


def test_lane_side_of_recognition_imports_no_heavy_libraries() -> None:
    import subprocess

    # In a fresh process: other tests in this one may have loaded cv2 already.

    subprocess.run([sys.executable, "-c", "import sys, portlane.edge.lane.recognition, portlane.edge.ops.daemons;"
                    "assert not {'cv2','onnxruntime'} & set(sys.modules)"], check=True)
