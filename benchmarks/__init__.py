"""Ratio benchmarks: nnatlas against a reference run in the same process. Results go to RESULTS.md."""
