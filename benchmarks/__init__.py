"""Benchmarks: `make bench` (= python -m benchmarks) runs them and prints the numbers.

Speed goals live here, never as timed assertions in tests. On a shared 2-core
machine only ratios measured in the same run mean much.
"""
