"""Speed and memory benchmarks, each against the obvious alternative on the same input in the same run.

``make bench`` (``python -m benchmarks [NAME ...]``) prints a table and writes benchmarks/RESULTS.md.
"""
