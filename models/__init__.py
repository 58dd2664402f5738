"""Recognition: ONNX manifest, pre/post-processing, grammar-constrained decoding, ISO 6346 and plate validation."""
