"""The same workloads done with dulwich's pure-Python reftable (``dulwich.reftable``).

What dulwich 1.2.21 offers, and so what is compared:

* writing: ``ReftableWriter``. Its ``add_ref`` checks ``name not in refs_order`` on a
  list (quadratic: 0.6 s for 10k refs, hours for 1M), so we fill ``refs`` and
  ``refs_order`` directly, exactly as dulwich's own batch path
  (``ReftableRefsContainer._write_batch_file``) does. It writes every ref into ONE
  block whose length is a 24-bit field: a table of more than ~16 MiB of records
  (about 450k of our refs) cannot be written at all (``OverflowError``), so there
  are no dulwich figures at 1M. No obj index, no restart points, no ref index.
* reading: ``ReftableReader`` parses the whole file into a dict (values as hex).
  There is no seek: a point lookup or a prefix scan is a full parse.
* stacks: ``ReftableRefsContainer`` re-reads and re-parses every table of the stack
  on every lookup (``read_loose_ref``) and every addition (``add_if_new``).
  Additions do not fsync and take no lock; there is no compaction.
* reflogs: not supported in reftables (log blocks are never written or read).
"""

from __future__ import annotations

import io
import os
import random
from typing import Any, Optional

try:
    import dulwich
    from dulwich.reftable import (
        REF_VALUE_REF,
        ReftableReader,
        ReftableRefsContainer,
        ReftableWriter,
    )

    AVAILABLE = True
    VERSION = ".".join(str(x) for x in dulwich.__version__)
except ImportError:  # pragma: no cover - optional peer
    AVAILABLE = False
    VERSION = None


def table_bytes(names_b: list[bytes], oids: list[bytes], update_index: int = 1) -> bytes:
    f = io.BytesIO()
    write_table(f, names_b, oids, update_index)
    return f.getvalue()


def write_table(f: Any, names_b: list[bytes], oids: list[bytes], update_index: int = 1,
                refs: Optional[dict[bytes, tuple[int, bytes]]] = None) -> None:
    """Write one table of ``names_b`` -> ``oids`` (raw ids) to the file ``f``.
    ``refs`` may be passed prebuilt (name -> (type, raw id)) to keep its construction
    out of a timed section."""
    w = ReftableWriter(f, auto_create_head=False, is_batch_operation=True)
    w.min_update_index = update_index
    w.max_update_index = update_index
    w.refs_order = list(names_b)
    w.refs = refs if refs is not None else refs_dict(names_b, oids)
    w.write()


def refs_dict(names_b: list[bytes], oids: list[bytes]) -> dict[bytes, tuple[int, bytes]]:
    return {nm: (REF_VALUE_REF, o) for nm, o in zip(names_b, oids, strict=True)}


def read_all(path: str) -> dict[bytes, tuple[int, bytes]]:
    with open(path, "rb") as f:
        return ReftableReader(f).all_refs()


def read_all_bytes(data: bytes) -> dict[bytes, tuple[int, bytes]]:
    return ReftableReader(io.BytesIO(data)).all_refs()


def prefix_scan(path: str, prefix: bytes) -> int:
    refs = read_all(path)
    return sum(1 for k in refs if k.startswith(prefix))


def make_stack(gitdir: str, parts: list[tuple[list[bytes], list[bytes]]]) -> ReftableRefsContainer:
    """A dulwich reftable stack in ``gitdir/reftable``, one table per part (oldest
    first, update indices 1, 2, ...), named and listed the way dulwich does."""
    cont = ReftableRefsContainer(gitdir)
    rnd = random.Random(len(parts))
    names = []
    for k, (nb, oids) in enumerate(parts, 1):
        name = f"0x{k:016x}-0x{k:016x}-{rnd.getrandbits(32):08x}.ref"
        with open(os.path.join(cont.reftable_dir, name), "wb") as f:
            write_table(f, nb, oids, k)
        names.append(name)
    with open(os.path.join(cont.reftable_dir, "tables.list"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    return cont


def lookup(gitdir: str, name: bytes) -> Optional[bytes]:
    """dulwich's point lookup: a container over the stack, ``read_loose_ref``."""
    cont = ReftableRefsContainer(gitdir)
    try:
        return cont.read_loose_ref(name)  # type: ignore[arg-type]
    except KeyError:
        return None


def merged_refs(gitdir: str) -> int:
    """All live refs of the stack, merged (``get_packed_refs``)."""
    return len(ReftableRefsContainer(gitdir).get_packed_refs())


def add_ref(cont: ReftableRefsContainer, name: bytes, hexid: bytes) -> bool:
    return bool(cont.add_if_new(name, hexid))  # type: ignore[arg-type]
