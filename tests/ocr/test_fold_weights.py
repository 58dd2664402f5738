"""The weight fold (``models/fold_weights.py``) changes how a graph is written, never what it computes."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from portlane.models import fold_weights, manifest


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _block(
    prefix: str, x: str, c_in: int, c_out: int, k: int, group: int, rng: np.random.Generator
) -> tuple[list[onnx.NodeProto], str]:
    """PP-LCNetV3 as exported: Conv → affine → hard-swish in four operators → affine."""
    w = rng.normal(0, 0.3, (c_out, c_in // group, k, k)).astype(np.float32)
    b = rng.normal(0, 0.1, c_out).astype(np.float32)
    s1, b1, s2, b2 = (np.array([v], np.float32) for v in rng.uniform(0.5, 2.0, 4))
    n = [
        _const(f"{prefix}w", w),
        _const(f"{prefix}b", b),
        helper.make_node(
            "Conv", [x, f"{prefix}w", f"{prefix}b"], [f"{prefix}c"], kernel_shape=[k, k], pads=[k // 2] * 4, group=group
        ),
        _const(f"{prefix}s1", s1),
        helper.make_node("Mul", [f"{prefix}s1", f"{prefix}c"], [f"{prefix}m1"]),
        _const(f"{prefix}b1", b1),
        helper.make_node("Add", [f"{prefix}m1", f"{prefix}b1"], [f"{prefix}a"]),
        _const(f"{prefix}three", np.array([3.0], np.float32)),
        helper.make_node("Add", [f"{prefix}a", f"{prefix}three"], [f"{prefix}a3"]),
        _const(f"{prefix}zero", np.array(0.0, np.float32)),
        _const(f"{prefix}six", np.array(6.0, np.float32)),
        helper.make_node("Clip", [f"{prefix}a3", f"{prefix}zero", f"{prefix}six"], [f"{prefix}cl"]),
        helper.make_node("Mul", [f"{prefix}a", f"{prefix}cl"], [f"{prefix}m"]),
        _const(f"{prefix}sixd", np.array([6.0], np.float32)),
        helper.make_node("Div", [f"{prefix}m", f"{prefix}sixd"], [f"{prefix}hs"]),
        _const(f"{prefix}s2", s2),
        helper.make_node("Mul", [f"{prefix}s2", f"{prefix}hs"], [f"{prefix}m2"]),
        _const(f"{prefix}b2", b2),
        helper.make_node("Add", [f"{prefix}m2", f"{prefix}b2"], [f"{prefix}out"]),
    ]
    return n, f"{prefix}out"


def _model() -> onnx.ModelProto:
    """Three blocks as in the recogniser: 3×3 stem, depthwise 3×3 (padded: its affine must stay),
    pointwise 1×1 (the affine before it folds in), then a Squeeze with opset-12 ``axes``."""
    rng = np.random.default_rng(3)
    nodes: list[onnx.NodeProto] = []
    x = "x"
    for prefix, c_in, c_out, k, group in (("a_", 3, 8, 3, 1), ("b_", 8, 8, 3, 8), ("c_", 8, 16, 1, 1)):
        more, x = _block(prefix, x, c_in, c_out, k, group, rng)
        nodes += more
    nodes.append(helper.make_node("ReduceMean", [x], ["pooled"], axes=[2], keepdims=1))
    nodes.append(helper.make_node("Squeeze", ["pooled"], ["y"], axes=[2]))
    graph = helper.make_graph(
        nodes,
        "lcnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 40])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out: np.ndarray = s.run(None, {"x": x})[0]
    return out


def test_the_fold_computes_the_same_function_with_fewer_operators() -> None:
    x = np.random.default_rng(5).normal(0, 1, (1, 3, 12, 40)).astype(np.float32)
    before = _model()
    want = _run(before, x)
    folded, stats = fold_weights.fold(_model())
    got = _run(folded, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    ops = [n.op_type for n in folded.graph.node]
    assert ops.count("HardSwish") == 3 and "Clip" not in ops and "Div" not in ops
    # three affines after a conv folded, one before the 1×1 conv; the one before the padded
    # depthwise conv stays (a Mul and an Add), or the border would see b instead of zeros
    assert dict(stats.rewrites) == {"conv_then_affine": 3, "hardswish": 3, "affine_then_pointwise": 1}
    assert ops.count("Mul") == 2 and ops.count("Add") == 2
    assert stats.nodes_after < stats.nodes_before


def test_folding_the_affine_into_a_padded_kernel_would_change_the_border(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the padded kernel keeps its affine: the fold without that guard (every kernel taken
    for an unpadded 1×1, ``_pointwise``) computes another function — the mutant the equality above catches."""
    x = np.random.default_rng(5).normal(0, 1, (1, 3, 12, 40)).astype(np.float32)
    want = _run(_model(), x)
    monkeypatch.setattr(fold_weights, "_pointwise", lambda conv: True)
    folded, stats = fold_weights.fold(_model())
    assert stats.rewrites["affine_then_pointwise"] == 2
    assert not np.allclose(_run(folded, x), want, rtol=1e-5, atol=1e-5)


def _upstream_dir() -> Path | None:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "models"
    return d if d.is_dir() else None


@pytest.mark.slow
@pytest.mark.skipif(
    _upstream_dir() is None,
    reason="the upstream files come with rapidocr-onnxruntime (pip install --no-deps rapidocr-onnxruntime==1.4.4)",
)
def test_the_shipped_weights_are_the_upstream_files_folded(tmp_path: Path) -> None:
    """Reproducible: folding the upstream files gives the shipped bytes, and the manifest names them."""
    src = _upstream_dir()
    assert src is not None
    m = manifest.load_manifest()
    for name in ("det", "rec"):
        entry = m["models"][name]
        up = src / entry["derived_from"]["file"]
        assert hashlib.sha256(up.read_bytes()).hexdigest() == entry["derived_from"]["sha256"]
        out = tmp_path / entry["file"]
        fold_weights.fold_file(up, out)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == entry["sha256"]
