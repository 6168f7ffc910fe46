"""Benchmarks: each module here defines `run(scale: float = 1.0) -> dict` returning its figures.

`hub bench` (and `make bench`) runs each one in its own process — so peak memory is that benchmark's
alone — and writes a JSON and a Markdown report. Figures are medians where a benchmark repeats itself,
and every throughput comes with a baseline measured in the same run, because these machines are noisy.
"""
