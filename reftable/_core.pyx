# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Cython core of reftable, one include per layer of the format (as Git's
``reftable/`` directory): buffers and integers, the platform (every file operation and
lock files), blocks, records, tables, the writer, merged tables.

Bounds checks are disabled for speed, so every length, offset and count read from
disk is checked explicitly against what remains before it is used. Anything that does
not add up raises ``FormatError`` with the file path and the offset.
"""

include "_buf.pxi"
include "_sys.pxi"
include "_block.pxi"
include "_record.pxi"
include "_table.pxi"
include "_writer.pxi"
include "_merged.pxi"
