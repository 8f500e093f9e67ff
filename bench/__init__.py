"""Benchmarks: stageline against bare Temporal on the same server, in the same run."""
