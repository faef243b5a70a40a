#!/usr/bin/env python3
"""Coverage-guided fuzzing of the reftable reader with atheris (libFuzzer).

Every input is read as a table through every read path (``reftable_fuzz.exercise``:
iteration of refs/logs as records and tuples, names, counts, seeks, point lookups, log
seeks, reverse lookups through the obj index, obj/index sections, merged views with a
valid table, compaction copies). ``FormatError`` is the only allowed exception; any
other one, a budget overrun (a loop) or a sanitizer report is a crash.

Modes (``REFTABLE_FUZZ_MODE``):
  crc     (default) the footer of every input is repaired before reading: the header is
          copied into the footer and the CRC-32 recomputed, so libFuzzer's byte-level
          mutations reach the block decoders instead of dying at the checksum.
  struct  as crc, plus a custom mutator that alternates libFuzzer's mutations with the
          structure-aware ones of the CI fuzzer (fields, varints, restart tables, log
          blocks inflated/mutated/deflated, splices, block duplication, ...).
  raw     inputs are read as they are.

Seeds: ``--seed-corpus=DIR`` writes the Git fixture tables and the library-written
tables (those of at most 20 kB) into DIR before fuzzing; pass DIR as the corpus.

See README.md beside this file for building an instrumented core (coverage of the
Cython code + AddressSanitizer); without it, atheris instruments only the Python
layers (reftable.table, merged, records) and the C reader is fuzzed blind.
"""

from __future__ import annotations

import os
import random
import sys
import zlib
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the test helpers (``support``)
# The work tree's package, unless PYTHONPATH names another (the instrumented build).
sys.path.append(str(HERE.parent.parent))

with atheris.instrument_imports(include=["reftable"]):
    import reftable  # noqa: F401  (imported here so that atheris instruments it)
    from reftable import Table

import reftable_fuzz as F  # noqa: E402
from support.oracle import refresh_footer_crc  # noqa: E402

MODE = os.environ.get("REFTABLE_FUZZ_MODE", "crc")
MAX_SEED = 20_000

CORPUS = F.load_corpus()
SEEDS = [e for e in CORPUS.values() if len(e.data) <= MAX_SEED]
BY_HASH = {hs: [e for e in SEEDS if e.layout.hash_size == hs] for hs in (20, 32)}
VALID = {e.name: Table.from_bytes(e.data, e.name) for e in SEEDS}


def key_source(data: bytes) -> F.Entry:
    """A seed table of the input's hash: its names and ids are the keys looked up, and
    it is the valid table merged with the input."""
    hs = 32 if len(data) > 28 and data[4] == 2 and data[24:28] != b"sha1" else 20
    pool = BY_HASH[hs]
    return pool[zlib.crc32(data[:64]) % len(pool)]


def TestOneInput(data: bytes) -> None:
    if MODE != "raw":
        data = refresh_footer_crc(data, mirror_header=True)
    e = key_source(data)
    # The record budget only catches loops: a small input may hold a log block that
    # legitimately inflates to 16 MiB of tiny records.
    F.exercise(data, e, random.Random(len(data)), valid=VALID[e.name],
               max_records=len(data) + (1 << 24), seconds=25.0)


def CustomMutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if rng.random() < 0.5:
        return atheris.Mutate(data, max_size)
    try:
        e = F.make_entry("input", data)        # the input is itself a valid table
    except Exception:                          # noqa: BLE001 - any parse failure
        e = rng.choice(SEEDS)
        if rng.random() < 0.7:                 # or start again from a seed
            data = e.data
    if data != e.data:
        return atheris.Mutate(data, max_size)
    out, _ = F.mutate(e, rng, SEEDS)
    return out[:max_size]


def write_seeds(d: str) -> None:
    os.makedirs(d, exist_ok=True)
    for e in SEEDS:
        with open(os.path.join(d, e.name + ".ref"), "wb") as f:
            f.write(e.data)


def main() -> None:
    argv = []
    for a in sys.argv:
        if a.startswith("--seed-corpus="):
            write_seeds(a.split("=", 1)[1])
        else:
            argv.append(a)
    if MODE == "struct":
        atheris.Setup(argv, TestOneInput, custom_mutator=CustomMutator)
    else:
        atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
