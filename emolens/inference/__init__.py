"""Offline inference without torch: face detectors, ONNX emotion classifier, tracking, video.

Entry point: :class:`emolens.inference.recognizer.Recognizer` (also ``emolens.Recognizer``).
"""
