"""Optional integrations of reftable with other libraries.

Each submodule imports its third-party library on import; importing this package
alone needs nothing beyond reftable itself. See :mod:`reftable.contrib.dulwich`.
"""
