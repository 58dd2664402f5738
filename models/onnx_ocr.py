"""PP-OCRv4 text detection and recognition run directly on onnxruntime.

Contract of the two networks (read from the RapidOCR/PaddleOCR pre- and post-processing and the
ONNX graphs, re-implemented here):

* **det** (DB, Differentiable Binarization): BGR image resized so that both sides are multiples
  of 32, normalised to [-1, 1], NCHW. Output: a text-probability map at input resolution.
  Boxes = contours of ``map > 0.3`` (2×2 dilation), scored by the mean probability inside the
  minimum-area rectangle (kept if ≥ ``box_thresh``), then grown by ``area × 1.6 / perimeter``
  (the DB "unclip", with pyclipper) because the network is trained on shrunk text kernels.
* **rec** (SVTR-LCNet + CTC): BGR crop resized to height 48 keeping its aspect, normalised to
  [-1, 1], right-padded with 0 to the batch's widest crop. Output ``[N, T, 6625]`` softmax
  posteriors, one frame per 8 input columns: class 0 is the CTC blank, 1…6623 the dictionary
  stored in the model's metadata (``character``), 6624 a space. We keep the whole matrix: the
  grammar decoder (``grammar.py``) searches it, greedy decoding would throw information away.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import onnxruntime as ort
import pyclipper

from . import manifest as _manifest

__all__ = ["Detector", "OcrEngine", "Recogniser", "TextBox", "detector_input", "session_options"]

REC_HEIGHT = 48
#: Columns of input per output frame of the recogniser (its total horizontal stride).
REC_STRIDE = 8
#: Columns two detector strips share (the network's receptive field near a strip's edge is cut).
TILE_OVERLAP = 192
#: Crops narrower than this are right-padded to it (PP-OCR's training width).
REC_MIN_WIDTH = 320
#: Crops share a recogniser run only if the widest is at most this much wider than the narrowest:
#: SVTR's mixing blocks attend across the whole width, so padding changes a crop's posteriors.
REC_BATCH_WIDTH_RATIO = 1.12


def session_options(threads: int | None = None, *, spin: bool = False) -> ort.SessionOptions:
    """Options of both sessions.

    ``spin``: onnxruntime's intra-op threads busy-wait between operators by default. On a box
    that runs anything else (the lane daemons, the broker, a second recogniser) a spinning thread
    holds a core another thread needs: with the edge box loaded, a 1080p plate frame took about
    twice as long spinning as not (bench/ocr_bench.py --spin, docs/recognition.md "Speed").
    """
    so = ort.SessionOptions()
    # 2 intra-op threads (the reference box's cores) for both models: on an otherwise quiet box the
    # fastest wall time (container p50 232 ms vs 328 with one thread each); once the other work
    # keeps the second core busy (1-min load >= ~3), one thread each is faster and ~10 % less CPU:
    # pass threads=1 there. Sequential, no spinning and the ALL graph level beat every other
    # setting (bench/ocr_settings.py; docs/recognition.md "Third step").
    so.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    # The arena keeps the largest activation ever seen (a 1080p det pass) for good; without it peak
    # RSS stays ~200 MB lower for a few ms per call (bench/ocr_bench.py, "arena").
    so.enable_cpu_mem_arena = False
    so.log_severity_level = 3
    return so


@dataclass(slots=True)
class TextBox:
    quad: np.ndarray  # 4×2 float32, clockwise from top-left, in source-image pixels
    score: float

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        x1, y1 = self.quad.min(axis=0)
        x2, y2 = self.quad.max(axis=0)
        return int(x1), int(y1), math.ceil(x2), math.ceil(y2)


def _order_quad(pts: np.ndarray) -> np.ndarray:
    xs = pts[np.argsort(pts[:, 0])]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], dtype=np.float32)


class Detector:
    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        box_thresh: float = 0.5,
        thresh: float = 0.3,
        unclip_ratio: float = 1.6,
        tile: int | None = None,
        spin: bool = False,
    ) -> None:
        self.session = ort.InferenceSession(
            str(path), session_options(threads, spin=spin), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.box_thresh = box_thresh
        self.thresh = thresh
        self.unclip_ratio = unclip_ratio
        #: inputs wider than this are run in overlapping strips (peak memory; see _run_tiled)
        self.tile = tile

    def __call__(
        self,
        img: np.ndarray,
        *,
        limit: int = 960,
        max_area: int | None = None,
        tile: int | None = None,
        upscale: float = 1.0,
    ) -> list[TextBox]:
        """Text boxes in ``img`` (BGR); the longer side is scaled to at most ``limit`` pixels and,
        with ``max_area``, the input to at most that many pixels (memory and time grow with it).
        A smaller image is enlarged towards ``limit`` by at most ``upscale`` (default: never).
        An input wider than ``tile`` (default: the detector's) is run in overlapping strips."""
        tile = tile if tile is not None else self.tile
        h, w = img.shape[:2]
        x = detector_input(img, limit=limit, max_area=max_area, upscale=upscale)
        rh, rw = x.shape[2:]
        prob = self._run_tiled(x, tile) if tile and rw > tile else self.session.run(None, {self.input_name: x})[0][0, 0]
        return self._boxes(prob, w / rw, h / rh, w, h)

    def _run_tiled(self, x: np.ndarray, tile: int) -> np.ndarray:
        """The probability map of a wide input computed in vertical strips of at most ``tile``
        columns that overlap by ``TILE_OVERLAP``, stitched by taking the larger probability.

        The network is fully convolutional, so a strip's map equals the whole map away from the
        strip's edges; peak memory (the activations of one pass) falls with the strip's width
        while the work stays about the same (+ the overlaps).
        """
        rw = x.shape[3]
        n = math.ceil((rw - TILE_OVERLAP) / (tile - TILE_OVERLAP))
        step = math.ceil((rw - TILE_OVERLAP) / n / 32) * 32
        prob = np.zeros(x.shape[2:], np.float32)
        for i in range(n):
            x0 = i * step
            x1 = rw if i == n - 1 else min(rw, x0 + step + TILE_OVERLAP)
            part = self.session.run(None, {self.input_name: np.ascontiguousarray(x[:, :, :, x0:x1])})[0][0, 0]
            np.maximum(prob[:, x0:x1], part, out=prob[:, x0:x1])
        return prob

    def _boxes(self, prob: np.ndarray, sx: float, sy: float, w: int, h: int) -> list[TextBox]:
        mask = cv2.dilate((prob > self.thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        out: list[TextBox] = []
        for c in contours[:1000]:
            rect = cv2.minAreaRect(c)
            if min(rect[1]) < 3:
                continue
            pts = cv2.boxPoints(rect)
            score = _mean_in_poly(prob, pts)
            if score < self.box_thresh:
                continue
            area, peri = cv2.contourArea(pts), cv2.arcLength(pts, True)
            if peri <= 0:
                continue
            off = pyclipper.PyclipperOffset()
            off.AddPath([tuple(p) for p in pts.tolist()], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
            grown = off.Execute(area * self.unclip_ratio / peri)
            if not grown:
                continue
            rect = cv2.minAreaRect(np.array(grown[0], dtype=np.float32))
            if min(rect[1]) < 5:
                continue
            quad = _order_quad(cv2.boxPoints(rect))
            quad[:, 0] = np.clip(quad[:, 0] * sx, 0, w)
            quad[:, 1] = np.clip(quad[:, 1] * sy, 0, h)
            if np.linalg.norm(quad[0] - quad[1]) <= 3 or np.linalg.norm(quad[0] - quad[3]) <= 3:
                continue
            out.append(TextBox(quad, float(score)))
        return out


def detector_input(
    img: np.ndarray, *, limit: int = 960, max_area: int | None = None, upscale: float = 1.0
) -> np.ndarray:
    """``img`` (BGR) as the detector's network takes it (:meth:`Detector.__call__`): scaled to
    sides that are multiples of 32, NCHW float32 in [-1, 1]."""
    h, w = img.shape[:2]
    ratio = min(upscale, limit / max(h, w), math.sqrt(max_area / (h * w)) if max_area else upscale)
    rh, rw = max(32, round(h * ratio / 32) * 32), max(32, round(w * ratio / 32) * 32)
    x = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
    out: np.ndarray = (x.astype(np.float32) * (2 / 255.0) - 1.0).transpose(2, 0, 1)[None]
    return out


def _mean_in_poly(prob: np.ndarray, pts: np.ndarray) -> float:
    h, w = prob.shape
    x1, y1 = np.clip(np.floor(pts.min(0)).astype(int), 0, [w - 1, h - 1])
    x2, y2 = np.clip(np.ceil(pts.max(0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y2 - y1 + 1, x2 - x1 + 1), np.uint8)
    cv2.fillPoly(mask, [(pts - [x1, y1]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y1 : y2 + 1, x1 : x2 + 1], mask)[0])


class Recogniser:
    def __init__(self, path: Path, *, threads: int | None = None, batch: int = 8, spin: bool = False) -> None:
        self.session = ort.InferenceSession(
            str(path), session_options(threads, spin=spin), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        chars = self.session.get_modelmeta().custom_metadata_map["character"].splitlines()
        #: class index -> character ("" for the CTC blank)
        self.classes: list[str] = ["", *chars, " "]
        self.index = {c: i for i, c in enumerate(self.classes) if c}
        self.batch = batch
        self.width_ratio = REC_BATCH_WIDTH_RATIO

    def __call__(self, crops: list[np.ndarray], *, pad: bool = True) -> list[np.ndarray]:
        """Per-frame class posteriors ``[T_i, 6625]`` for each BGR crop (padding frames removed).

        Every crop is right-padded to at least ``REC_MIN_WIDTH`` (320) columns, as PP-OCR pads its
        training crops: short crops read markedly better padded than bare. Wider crops are batched
        only with crops of nearly the same width (within 12 %), so that a read never depends on
        what else was in the batch (a crop padded to a much wider batch reads differently:
        measured, a province Hanzi at p=0.49 in one framing became 0.95). ``pad=False`` reads
        each crop at its own width, alone: a second view of the same pixels.
        """
        min_w = REC_MIN_WIDTH if pad else 0
        out: list[np.ndarray | None] = [None] * len(crops)
        widths = [max(8, math.ceil(REC_HEIGHT * c.shape[1] / max(1, c.shape[0]))) for c in crops]
        order = sorted(range(len(crops)), key=lambda i: widths[i])
        batches: list[list[int]] = []
        for i in order:
            if (
                pad
                and batches
                and len(batches[-1]) < self.batch
                and max(min_w, widths[i]) <= self.width_ratio * max(min_w, widths[batches[-1][0]])
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        for idx in batches:
            width = max(min_w, *(widths[i] for i in idx))
            x = np.zeros((len(idx), 3, REC_HEIGHT, width), np.float32)
            for k, i in enumerate(idx):
                r = cv2.resize(crops[i], (widths[i], REC_HEIGHT))
                x[k, :, :, : widths[i]] = (r.astype(np.float32) * (2 / 255.0) - 1.0).transpose(2, 0, 1)
            probs = self.session.run(None, {self.input_name: x})[0]
            for k, i in enumerate(idx):
                out[i] = probs[k, : min(probs.shape[1], math.ceil(widths[i] / REC_STRIDE) + 1)]
        return [p for p in out if p is not None]

    def greedy(self, probs: np.ndarray) -> tuple[str, float]:
        """Plain best-path CTC decode (what upstream does): text and mean character probability."""
        best = probs.argmax(1)
        text, scores, prev = [], [], 0
        for t, c in enumerate(best):
            if c != prev and c != 0:
                text.append(self.classes[c])
                scores.append(probs[t, c])
            prev = c
        return "".join(text), float(np.mean(scores)) if scores else 0.0


class OcrEngine:
    """Both sessions, created once per process and reused (session creation costs ~0.3 s)."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _shared: ClassVar[dict[tuple[int | None, str | None], OcrEngine]] = {}

    def __init__(self, *, threads: int | None = None, model_dir: Path | None = None, spin: bool = False) -> None:
        self.det = Detector(_manifest.resolve("det", model_dir=model_dir), threads=threads, spin=spin)
        self.rec = Recogniser(_manifest.resolve("rec", model_dir=model_dir), threads=threads, spin=spin)

    @classmethod
    def shared(cls, *, threads: int | None = None) -> OcrEngine:
        key = (threads, None)
        with cls._lock:
            if key not in cls._shared:
                cls._shared[key] = cls(threads=threads)
            return cls._shared[key]


def crop_quad(img: np.ndarray, quad: np.ndarray, *, pad: float = 0.0) -> np.ndarray:
    """Perspective-rectified crop of a quadrilateral (tl, tr, br, bl), optionally padded."""
    q = quad.astype(np.float32).copy()
    if pad:
        c = q.mean(0)
        q = c + (q - c) * (1 + pad)
    w = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2])))
    h = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
    w, h = max(w, 2), max(h, 2)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    m = cv2.getPerspectiveTransform(q, dst)
    return cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
