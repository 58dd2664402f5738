"""Recognition: ONNX manifest, pre/post-processing, grammar-constrained decoding, ISO 6346 and plate validation.

Layers (heavy imports only below the line):

* ``grammar``, ``iso6346``, ``calibration``, ``fusion``, ``evaluation``, ``worker`` — pure Python,
  importable from the lane's gate path without ``cv2`` or ``onnxruntime``.
* ``manifest`` (sha256-verified model files), ``onnx_ocr`` (PP-OCRv4 det + rec sessions),
  ``pipeline`` (find → rectify → recognise → decode → validate), ``plate_look``,
  ``plate_province`` — need numpy/cv2/onnxruntime and are imported lazily by ``worker`` and the CLI.
* ``fold_weights`` — a developer's tool, never imported at run time (needs the ``onnx`` package of
  the dev extra): derives the shipped ``weights/`` from the upstream PP-OCRv4 files.
"""
