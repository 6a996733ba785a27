"""Latency and memory benchmarks; runner.py is the file that runs on devices."""
