"""Benchmarks run by `make bench`: ours against a baseline, side by side in one process."""
