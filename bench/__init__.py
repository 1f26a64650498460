"""Benchmarks: each writes JSON with machine info to bench/results/."""
