"""Benchmarks (planned): every export against the float SavedModel."""
