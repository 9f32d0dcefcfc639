"""Evaluation: exact-code metrics, gold and prediction formats, real-text benchmarks."""
