"""Fold the PP-OCRv4 graphs' elementwise chains into their convolutions (a developer's tool).

    python -m portlane.models.fold_weights SRC_DIR DST_DIR     # needs the `onnx` package (dev extra)

Why: profiled with onnxruntime (``docs/recognition.md``, "Speed"), the upstream recogniser
spent only ~40 % of its time in convolutions and ~45 % in elementwise operators, the detector
alike. The Paddle → ONNX export writes PP-LCNetV3's blocks out op by op: every convolution is
followed by a learnable affine (``Mul`` by a scalar, ``Add`` a scalar), hard-swish as four
operators (``Add 3``, ``Clip 0..6``, ``Mul``, ``Div 6``), then another affine. Each of them
reads and writes the whole activation tensor, and each breaks onnxruntime's blocked (NCHWc)
layout, which then reorders the tensor before and after every convolution.

The rewrite is exact algebra on the weights, nothing learned or approximated:

1. ``Conv → Mul(s) → Add(b)``: the affine is the convolution's: ``W' = s·W``, ``B' = s·B + b``;
2. ``Add(x, 3) → Clip(0, 6) → Mul(x, ·) → Div(6)`` is ``HardSwish(x)`` (ONNX opset 14), which
   onnxruntime fuses into the convolution before it;
3. ``Mul(s) → Add(b) → Conv`` with a 1×1 unpadded kernel: ``W' = s·W``, ``B' = B + b·ΣW``. Before
   a padded (3×3, 5×5 depthwise) kernel the affine stays: the zero padding is not ``b``.

Opset 12 → 14 changes only ``Squeeze``/``Unsqueeze`` here (their axes become an input). The
outputs of the folded graphs equal the upstream ones to float rounding (|Δ| ≤ 1e-4 on the
posteriors; every read of the development set identical, ``docs/recognition.md``); the time
per recogniser crop fell by about a third, the detector's by about a fifth. The folded files
are what ``models/weights`` ships; ``manifest.json`` records the upstream file each one is
derived from (its sha256) and this module as the derivation.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

__all__ = ["FOLDED", "Folded", "fold", "fold_file", "main"]

#: Upstream file name → the folded file shipped in models/weights.
FOLDED = {
    "ch_PP-OCRv4_det_infer.onnx": "ch_PP-OCRv4_det_folded.onnx",
    "ch_PP-OCRv4_rec_infer.onnx": "ch_PP-OCRv4_rec_folded.onnx",
}
#: HardSwish is an ONNX operator from opset 14.
OPSET = 14

Array = npt.NDArray[np.float32]


@dataclass
class Folded:
    """What a fold did: rewrites per kind, nodes before and after."""

    rewrites: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    nodes_before: int = 0
    nodes_after: int = 0


class _Graph:
    """The graph's nodes and constants, with the lookups the rewrites need."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        g = model.graph
        self.consts: dict[str, npt.NDArray[np.generic]] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.nodes: list[onnx.NodeProto] = []
        for n in g.node:
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            else:
                self.nodes.append(n)
        self.outputs = {o.name for o in g.output}

    def users(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if name in n.input]

    def only_user(self, name: str, op: str) -> onnx.NodeProto | None:
        """The one node reading ``name`` if it is an ``op`` (and ``name`` is no graph output)."""
        users = self.users(name)
        if name in self.outputs or len(users) != 1 or users[0].op_type != op:
            return None
        return users[0]

    def scalar(self, name: str) -> float | None:
        v = self.consts.get(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    def other_scalar(self, node: onnx.NodeProto, x: str) -> float | None:
        """The scalar constant operand of a binary ``node`` whose other operand is ``x``."""
        rest = [i for i in node.input if i != x]
        return self.scalar(rest[0]) if len(rest) == 1 and len(node.input) == 2 else None

    def weights(self, conv: onnx.NodeProto) -> tuple[Array, Array]:
        w = np.asarray(self.consts[conv.input[1]], np.float32)
        b = (
            np.asarray(self.consts[conv.input[2]], np.float32)
            if len(conv.input) > 2
            else np.zeros(w.shape[0], np.float32)
        )
        return w, b

    def set_weights(self, conv: onnx.NodeProto, x: str, w: Array, b: Array, tag: str) -> None:
        wn, bn = f"{conv.name or conv.output[0]}.{tag}.w", f"{conv.name or conv.output[0]}.{tag}.b"
        self.consts[wn], self.consts[bn] = w.astype(np.float32), b.astype(np.float32)
        conv.input[:] = [x, wn, bn]

    def save(self) -> onnx.ModelProto:
        g = self.model.graph
        del g.node[:]
        g.node.extend(self.nodes)
        del g.value_info[:]  # intermediate shapes of the old graph; onnxruntime infers its own
        used = {i for n in self.nodes for i in n.input}
        del g.initializer[:]
        g.initializer.extend(numpy_helper.from_array(v, k) for k, v in sorted(self.consts.items()) if k in used)
        return self.model


def _attr(node: onnx.NodeProto, name: str) -> object:
    """The value of ``node``'s attribute ``name``, None if it has none."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def _pointwise(conv: onnx.NodeProto) -> bool:
    """A 1×1 kernel that reads no padding (what an affine before it can fold into)."""
    kernel, pads, auto = _attr(conv, "kernel_shape"), _attr(conv, "pads"), _attr(conv, "auto_pad")
    return (
        isinstance(kernel, list)
        and kernel == [1, 1]
        and (pads is None or (isinstance(pads, list) and not any(pads)))
        and auto in (None, b"NOTSET", b"VALID")
    )


def _conv_then_affine(g: _Graph, stats: Folded) -> bool:
    for conv in g.nodes:
        if conv.op_type != "Conv":
            continue
        mul = g.only_user(conv.output[0], "Mul")
        s = None if mul is None else g.other_scalar(mul, conv.output[0])
        if mul is None or s is None:
            continue
        last, b = mul, 0.0
        add = g.only_user(mul.output[0], "Add")
        bias = None if add is None else g.other_scalar(add, mul.output[0])
        if add is not None and bias is not None:
            last, b = add, bias
        w, cb = g.weights(conv)
        g.set_weights(conv, conv.input[0], w * np.float32(s), cb * np.float32(s) + np.float32(b), "affine_after")
        conv.output[0] = last.output[0]
        g.nodes.remove(mul)
        if last is not mul:
            g.nodes.remove(last)
        stats.rewrites["conv_then_affine"] += 1
        return True
    return False


def _hardswish(g: _Graph, stats: Folded) -> bool:
    for add in g.nodes:
        if add.op_type != "Add":
            continue
        xs = [i for i in add.input if g.scalar(i) != 3.0]
        if len(xs) != 1 or len(add.input) != 2:
            continue
        x = xs[0]
        clip = g.only_user(add.output[0], "Clip")
        if clip is None or len(clip.input) != 3 or (g.scalar(clip.input[1]), g.scalar(clip.input[2])) != (0.0, 6.0):
            continue
        mul = g.only_user(clip.output[0], "Mul")
        if mul is None or x not in mul.input:
            continue
        div = g.only_user(mul.output[0], "Div")
        if div is None or div.input[0] != mul.output[0] or g.scalar(div.input[1]) != 6.0:
            continue
        at = g.nodes.index(add)
        for n in (add, clip, mul, div):
            g.nodes.remove(n)
        g.nodes.insert(at, helper.make_node("HardSwish", [x], [div.output[0]], name=f"{div.output[0]}.hardswish"))
        stats.rewrites["hardswish"] += 1
        return True
    return False


def _affine_then_pointwise(g: _Graph, stats: Folded) -> bool:
    for mul in g.nodes:
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        xs = [i for i in mul.input if g.scalar(i) is None]
        if len(xs) != 1:
            continue
        x = xs[0]
        s = g.other_scalar(mul, x)
        add = g.only_user(mul.output[0], "Add")
        b = None if add is None else g.other_scalar(add, mul.output[0])
        conv = None if add is None else g.only_user(add.output[0], "Conv")
        if s is None or add is None or b is None or conv is None or conv.input[0] != add.output[0]:
            continue
        if not _pointwise(conv):
            continue  # a padded kernel sees zeros at the border, not b: the affine stays
        w, cb = g.weights(conv)
        g.set_weights(
            conv, x, w * np.float32(s), cb + np.float32(b) * w.reshape(w.shape[0], -1).sum(1), "affine_before"
        )
        g.nodes.remove(mul)
        g.nodes.remove(add)
        stats.rewrites["affine_then_pointwise"] += 1
        return True
    return False


def _opset_14(g: _Graph) -> None:
    """Opset 12 → 14: the only operators of these graphs that changed are Squeeze/Unsqueeze (13:
    axes from an attribute to an input); the rest keep their meaning."""
    for n in g.nodes:
        if n.op_type in ("Squeeze", "Unsqueeze"):
            axes = _attr(n, "axes")
            if axes is not None:
                name = f"{n.output[0]}.axes"
                g.consts[name] = np.asarray(axes, np.int64)
                n.input.append(name)
                kept = [a for a in n.attribute if a.name != "axes"]
                del n.attribute[:]
                n.attribute.extend(kept)
    for o in g.model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = OPSET


def fold(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Folded]:
    """The folded model (the argument is modified) and what was folded."""
    g = _Graph(model)
    stats = Folded(nodes_before=len(model.graph.node))
    _opset_14(g)
    rules: list[Callable[[_Graph, Folded], bool]] = [_conv_then_affine, _hardswish, _affine_then_pointwise]
    for rule in rules:
        while rule(g, stats):
            pass
    out = g.save()
    onnx.checker.check_model(out, full_check=True)
    stats.nodes_after = len(out.graph.node)
    return out, stats


def fold_file(src: Path, dst: Path) -> Folded:
    model, stats = fold(onnx.load(str(src)))
    dst.write_bytes(model.SerializeToString())
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("src", type=Path, help="folder holding the upstream ch_PP-OCRv4_{det,rec}_infer.onnx")
    ap.add_argument("dst", type=Path, help="folder to write the folded files to")
    a = ap.parse_args(argv)
    for name, out in FOLDED.items():
        src = a.src / name
        if not src.is_file():
            print(
                f"{src}: not found; point SRC_DIR at the upstream models (rapidocr_onnxruntime/models)", file=sys.stderr
            )
            return 2
        stats = fold_file(src, a.dst / out)
        digest = hashlib.sha256((a.dst / out).read_bytes()).hexdigest()
        src_digest = hashlib.sha256(src.read_bytes()).hexdigest()
        print(f"{out}: sha256 {digest} (from {name} sha256 {src_digest})")
        print(f"  nodes {stats.nodes_before} -> {stats.nodes_after}; {dict(stats.rewrites)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
