"""Benchmarks: latency, size and drift of every export against the float SavedModel (``python -m benchmarks --model DIR``)."""
