"""Benchmarks of pyreftable (``reftable``) against dulwich's pure-Python reftable.

Run ``python -m benchmarks --help``; see ``benchmarks/README.md``.
"""
