"""The choice of core (``reftable._impl``) and the two cores side by side: the compiled
core and its pure-Python twin write the same bytes and read each other's tables."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import oid
from support.fixtures import ROOT

import reftable
from reftable import LogRecord, LogValueType, RefRecord, RefValueType
from reftable import _pure as pure

try:
    from reftable import _core as compiled
except ImportError:  # not built: the side-by-side tests are skipped
    compiled = None

needs_compiled = pytest.mark.skipif(compiled is None, reason="the compiled core is not built")


def run(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "REFTABLE_PURE_PYTHON"}
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=60)


def copy_package(dest: Path, name: str = "reftable", pure_core: bool = True,
                 compiled_core: bool = False) -> Path:
    """A copy of ``reftable/`` (as a vendoring build system would make), under ``name``."""
    target = dest / name
    shutil.copytree(ROOT / "reftable", target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"))
    if not pure_core:
        shutil.rmtree(target / "_pure")
    if compiled_core:
        for so in (ROOT / "reftable").glob("_core.*"):
            if so.suffix in (".so", ".pyd"):
                shutil.copy(so, target)
    return target


def test_implementation_names_the_core_in_use():
    assert reftable.IMPLEMENTATION in ("cython", "python")
    from reftable._impl import core
    assert (core is pure) == (reftable.IMPLEMENTATION == "python")


def test_environment_forces_the_pure_core(tmp_path):
    p = run("import reftable, reftable._impl as i; print(reftable.IMPLEMENTATION, "
            "i.core.__name__)", ROOT, REFTABLE_PURE_PYTHON="1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["python", "reftable._pure"]


def test_a_renamed_copy_without_the_compiled_module_works(tmp_path):
    copy_package(tmp_path, "vendored_rt")
    code = ("import vendored_rt as rt\n"
            "from vendored_rt import RefRecord, Table, write_table_bytes\n"
            "b = write_table_bytes([RefRecord.val1('refs/heads/main', 1, '11' * 20)], [],\n"
            "                      min_update_index=1, max_update_index=1)\n"
            "print(rt.IMPLEMENTATION, Table.from_bytes(b).read_ref('refs/heads/main').name)\n")
    p = run(code, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["python", "refs/heads/main"]
    assert "Warning" not in p.stderr


def test_errors_import_without_any_core(tmp_path):
    copy_package(tmp_path, pure_core=False)
    p = run("import reftable.errors as e, reftable\n"
            "print(issubclass(e.FormatError, e.ReftableError), reftable.ReftableIOError)\n",
            tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("True <class 'reftable.errors.ReftableIOError'>")


def test_every_package_of_the_source_tree_is_distributed():
    """A wheel ships the packages pyproject names: a package directory left out (the
    pure core was, once) is missing from an installed copy, and setuptools only warns."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    named = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(d.relative_to(ROOT).parts) for d in (ROOT / "reftable").rglob("*")
             if d.is_dir() and (d / "__init__.py").is_file()} | {"reftable"}
    assert named == found


def test_a_compiled_module_that_does_not_load_falls_back_with_a_warning(tmp_path):
    target = copy_package(tmp_path)
    (target / "_core.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not a shared object")
    (target / "_core.abi3.so").write_bytes(b"not a shared object")
    p = run("import reftable; print(reftable.IMPLEMENTATION)", tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "python"
    assert "RuntimeWarning" in p.stderr and "compiled core does not load" in p.stderr


# -- the two cores side by side -----------------------------------------------------------


def records(rng: random.Random, n: int, hash_size: int) -> tuple[list[RefRecord],
                                                                  list[LogRecord]]:
    names = sorted({f"refs/{rng.choice(['heads', 'tags'])}/{rng.getrandbits(24):06x}"
                    f"{'/x' * rng.randrange(3)}" for _ in range(n)})
    hash_ = "sha1" if hash_size == 20 else "sha256"
    refs: list[RefRecord] = []
    for i, name in enumerate(names):
        kind = rng.randrange(10)
        ui = rng.randrange(1, 4)
        if kind == 0:
            refs.append(RefRecord.deletion(name, ui))
        elif kind == 1:
            refs.append(RefRecord.symref(name, ui, "refs/heads/main"))
        elif kind == 2:
            refs.append(RefRecord.val2(name, ui, oid(i, hash_), oid(i + 1, hash_)))
        else:  # shared ids land in several blocks of the obj index
            refs.append(RefRecord.val1(name, ui, oid(rng.randrange(n // 3 + 1), hash_)))
    logs = [LogRecord.update(name, ui, oid(ui, hash_), oid(ui + 1, hash_), "A U Thor",
                             "a@example.com", 1_700_000_000 + ui, -60 * rng.randrange(9),
                             f"update {ui}\n")
            for name in names[: n // 4] for ui in (3, 2, 1)]
    return refs, logs


def write_with(core, refs, logs, hash_size, **opts) -> bytes:
    out: list[bytes] = []
    w = core.WriterCore(hash_size=hash_size, min_update_index=1, max_update_index=3,
                        sink=out.append, **opts)
    core.write_ref_records(w, refs)
    core.write_log_records(w, logs, True)
    w.close()
    return b"".join(out)


@needs_compiled
@pytest.mark.parametrize("seed", range(6))
def test_both_cores_write_the_same_bytes_and_read_each_other(seed):
    rng = random.Random(seed)
    hash_size = 20 if seed % 2 == 0 else 32
    opts = {"block_size": rng.choice([256, 1024, 4096]),
            "restart_interval": rng.choice([1, 3, 16]),
            "unpadded": seed % 3 == 0, "index_objects": seed != 4}
    refs, logs = records(rng, rng.choice([50, 400, 3000]), hash_size)
    for core in (compiled, pure):  # (the package registers them with its own core only)
        core.register_record_types(RefRecord, LogRecord, tuple(RefValueType),
                                   tuple(LogValueType))
    data = write_with(compiled, refs, logs, hash_size, **opts)
    assert write_with(pure, refs, logs, hash_size, **opts) == data
    a = compiled.TableCore(data)
    b = pure.TableCore(data)
    for typ in (pure.BLOCK_TYPE_REF, pure.BLOCK_TYPE_LOG, pure.BLOCK_TYPE_OBJ):
        assert list(a.iter_section(typ)) == list(b.iter_section(typ))
    for packed in (False, True):
        assert a.iter_section(pure.BLOCK_TYPE_REF).ref_columns(packed) == \
            b.iter_section(pure.BLOCK_TYPE_REF).ref_columns(packed)
        merged = [core.MergedIter([t.iter_section(pure.BLOCK_TYPE_REF)], pure.BLOCK_TYPE_REF)
                  for core, t in ((compiled, a), (pure, b))]
        assert merged[0].ref_columns(packed) == merged[1].ref_columns(packed)
    keys = [r.name.encode() for r in refs[::5]] + [b"refs/heads/absent"]
    assert compiled.merged_lookup_many([a], keys) == pure.merged_lookup_many([b], keys)
    names = [k.decode("utf-8", "surrogateescape") for k in keys]  # str names: no bytes copies
    assert compiled.merged_lookup_many([a], names) == pure.merged_lookup_many([b], keys)
    ids = [r.value for r in refs[::9] if r.value is not None] + [bytes(hash_size)]
    assert a.refs_for_many(ids) == b.refs_for_many(ids)
    assert compiled.log_key(b"refs/heads/x", 7) == pure.log_key(b"refs/heads/x", 7)
    for r in refs[::7]:
        key = r.name.encode()
        assert a.lookup(pure.BLOCK_TYPE_REF, key) == b.lookup(pure.BLOCK_TYPE_REF, key)
        assert list(a.seek(pure.BLOCK_TYPE_REF, key[:12], False, key[:12])) == \
            list(b.seek(pure.BLOCK_TYPE_REF, key[:12], False, key[:12]))
