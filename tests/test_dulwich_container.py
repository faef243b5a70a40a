"""reftable.contrib.dulwich: a dulwich RefsContainer on a reftable stack.

dulwich's own container tests (``RefsContainerTests`` and friends in its
``tests/test_refs.py``, ``TestReftableRefsContainer`` in ``tests/test_reftable.py``)
ship only in its sdist, not in the installed package, so they cannot be imported.
The tests below are our own, written to cover the same behaviours; each names the
dulwich test it mirrors (``mirrors: Class.test_name``). Behaviours that differ on
purpose are tested as such and say so.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dulwich")

from dulwich.errors import RefFormatError  # noqa: E402
from dulwich.file import FileLocked  # noqa: E402
from dulwich.objects import ZERO_SHA, Commit, Tag, Tree  # noqa: E402
from dulwich.refs import NamespacedRefsContainer, SymrefLoop  # noqa: E402
from dulwich.repo import MemoryRepo, Repo  # noqa: E402
from support.fixtures import SCENARIOS, copy_fixture, load_expected  # noqa: E402

from reftable import FormatError, RefValueType  # noqa: E402
from reftable.contrib.dulwich import (  # noqa: E402
    ReftableRefsContainer,
    normalize_reflog_message,
    split_identity,
    tz_git_to_seconds,
    tz_seconds_to_git,
)
from reftable.stack import Stack, StackOptions  # noqa: E402
from reftable.transaction import LogEntry  # noqa: E402

C1 = b"c1" * 20  # what HEAD, master, packed and the forty-char branch hold
T1 = b"7a" * 20  # annotated tag refs/tags/refs-0.1 (peels to C1)
T2 = b"7b" * 20  # refs/tags/refs-0.2 (plain record)
ONES, TWOS, THREES, NINES = b"1" * 40, b"2" * 40, b"3" * 40, b"9" * 40
WHO = b"C O Mitter <committer@example.com>"

# The content every container test starts from (same shape as dulwich's _TEST_REFS:
# HEAD -> master, three branches at one commit, two tags, a self-referencing symref).
EXPECTED = {
    b"HEAD": C1,
    b"refs/heads/forty-char-ref-aaaaaaaaaaaaaaaa": C1,
    b"refs/heads/master": C1,
    b"refs/heads/packed": C1,
    b"refs/tags/refs-0.1": T1,
    b"refs/tags/refs-0.2": T2,
}
ALL_KEYS = set(EXPECTED) | {b"refs/heads/loop"}


def _raw(h: bytes) -> bytes:
    return bytes.fromhex(h.decode())


def _options(**kw: Any) -> StackOptions:
    kw.setdefault("fsync", False)
    return StackOptions(**kw)


@pytest.fixture
def stack_dir(tmp_path: Path) -> Path:
    d = tmp_path / "reftable"
    d.mkdir()
    with Stack.open(str(d), _options()) as st, st.transaction() as tx:
        tx.symref("HEAD", "refs/heads/master")
        tx.create("refs/heads/forty-char-ref-aaaaaaaaaaaaaaaa", _raw(C1))
        tx.create("refs/heads/master", _raw(C1))
        tx.create("refs/heads/packed", _raw(C1))
        tx.create("refs/tags/refs-0.1", _raw(T1), peeled=_raw(C1))
        tx.create("refs/tags/refs-0.2", _raw(T2))
        tx.symref("refs/heads/loop", "refs/heads/loop")
    return d


@pytest.fixture
def refs(stack_dir: Path):
    with ReftableRefsContainer(stack_dir, committer=WHO, stack_options=_options()) as c:
        yield c


def logs_of(c: ReftableRefsContainer, name: str) -> list[Any]:
    return list(c.stack.logs(name))


# -- RefsContainerTests (dulwich tests/test_refs.py), shared by all containers ----------


def test_keys(refs):
    """mirrors: RefsContainerTests.test_keys"""
    assert refs.keys() == refs.allkeys() == ALL_KEYS
    heads = refs.keys(b"refs/heads")
    heads.discard(b"loop")
    assert sorted(heads) == [b"forty-char-ref-aaaaaaaaaaaaaaaa", b"master", b"packed"]
    assert sorted(refs.keys(b"refs/tags")) == [b"refs-0.1", b"refs-0.2"]
    assert refs.keys(b"refs/tags/") == refs.keys(b"refs/tags")
    assert refs.keys(b"refs/head") == set()  # whole components only


def test_iter(refs):
    """mirrors: RefsContainerTests.test_iter"""
    assert set(refs) == ALL_KEYS


def test_as_dict(refs):
    """mirrors: RefsContainerTests.test_as_dict (the loop is left out)"""
    assert refs.as_dict() == EXPECTED
    assert refs.as_dict(b"refs/tags") == {b"refs-0.1": T1, b"refs-0.2": T2}


def test_get_symrefs(refs):
    """mirrors: RefsContainerTests.test_get_symrefs"""
    refs.set_symbolic_ref(b"refs/heads/src", b"refs/heads/dst")
    assert refs.get_symrefs() == {
        b"HEAD": b"refs/heads/master",
        b"refs/heads/src": b"refs/heads/dst",
        b"refs/heads/loop": b"refs/heads/loop",
    }


def test_setitem(refs):
    """mirrors: RefsContainerTests.test_setitem, DiskRefsContainerTests.test_setitem"""
    refs[b"refs/some/ref"] = C1
    assert refs[b"refs/some/ref"] == C1
    refs[b"refs/heads/symbolic"] = b"ref: refs/heads/master"  # a symref value
    assert refs.read_loose_ref(b"refs/heads/symbolic") == b"ref: refs/heads/master"
    assert refs[b"refs/heads/symbolic"] == C1
    with pytest.raises(RefFormatError):
        refs[b"notrefs/foo"] = C1
    with pytest.raises(ValueError):
        refs[b"refs/some/ref"] = b"42d06bd"
    # a ref cannot be a directory of another (Git's D/F rule; dulwich: OSError)
    with pytest.raises(OSError):
        refs[b"refs/some/ref/sub"] = C1
    refs[b"refs/heads/dir/leaf"] = C1
    with pytest.raises(IsADirectoryError):
        refs[b"refs/heads/dir"] = C1
    with pytest.raises(NotADirectoryError):
        refs.add_if_new(b"refs/heads/dir/leaf/sub", C1)
    assert b"refs/heads/dir" not in refs


def test_set_if_equals(refs):
    """mirrors: RefsContainerTests.test_set_if_equals, DiskRefsContainerTests.
    test_set_if_equals (the symref is followed, no lock file is left)"""
    assert not refs.set_if_equals(b"HEAD", b"c0ffee", NINES)
    assert refs[b"HEAD"] == C1
    assert refs.set_if_equals(b"HEAD", C1, NINES)
    assert refs[b"HEAD"] == NINES
    assert refs.read_loose_ref(b"HEAD") == b"ref: refs/heads/master"
    assert refs[b"refs/heads/master"] == NINES
    assert refs.set_if_equals(b"HEAD", NINES, NINES)  # no-op, still True
    assert refs.set_if_equals(b"refs/heads/master", None, NINES)
    assert refs.set_if_equals(b"refs/heads/nonexistent", ZERO_SHA, NINES)
    assert refs[b"refs/heads/nonexistent"] == NINES
    assert not refs.set_if_equals(b"refs/heads/nonexistent", ZERO_SHA, ONES)
    assert not os.path.exists(refs.stack.list_path + ".lock")


def test_add_if_new(refs):
    """mirrors: RefsContainerTests.test_add_if_new, DiskRefsContainerTests.
    test_add_if_new_packed"""
    assert not refs.add_if_new(b"refs/heads/master", NINES)
    assert refs[b"refs/heads/master"] == C1
    assert not refs.add_if_new(b"refs/tags/refs-0.1", NINES)
    assert refs[b"refs/tags/refs-0.1"] == T1
    assert refs.add_if_new(b"refs/some/ref", NINES)
    assert refs[b"refs/some/ref"] == NINES


def test_invalid_values_rejected(refs):
    """mirrors: RefsContainerTests.test_set_if_equals_rejects_invalid_value,
    test_add_if_new_rejects_invalid_value"""
    with pytest.raises(ValueError):
        refs.set_if_equals(b"refs/heads/master", None, b"../../../../etc/passwd")
    with pytest.raises(ValueError):
        refs.add_if_new(b"refs/heads/new", b"../../config")
    with pytest.raises(ValueError):  # a sha256 id in a sha1 stack
        refs.set_if_equals(b"refs/heads/master", None, b"a" * 64)
    assert refs[b"refs/heads/master"] == C1
    assert b"refs/heads/new" not in refs


def test_set_symbolic_ref(refs):
    """mirrors: RefsContainerTests.test_set_symbolic_ref"""
    refs.set_symbolic_ref(b"refs/heads/symbolic", b"refs/heads/master")
    assert refs.read_loose_ref(b"refs/heads/symbolic") == b"ref: refs/heads/master"
    assert refs[b"refs/heads/symbolic"] == C1


def test_set_symbolic_ref_overwrite(refs):
    """mirrors: RefsContainerTests.test_set_symbolic_ref_overwrite"""
    assert b"refs/heads/symbolic" not in refs
    refs[b"refs/heads/symbolic"] = NINES
    assert refs.read_loose_ref(b"refs/heads/symbolic") == NINES
    refs.set_symbolic_ref(b"refs/heads/symbolic", b"refs/heads/master")
    assert refs.read_loose_ref(b"refs/heads/symbolic") == b"ref: refs/heads/master"
    assert refs[b"refs/heads/symbolic"] == C1


def test_check_refname(refs):
    """mirrors: RefsContainerTests.test_check_refname,
    test_check_refname_empty_component_warns, test_check_refname_other_defects_still_raise
    (dulwich's own check, inherited)"""
    refs._check_refname(b"HEAD")
    refs._check_refname(b"refs/stash")
    refs._check_refname(b"refs/heads/foo")
    for bad in (b"refs", b"notrefs/foo", b"refs/heads//foo.lock", b"refs/heads//foo..bar"):
        with pytest.raises(RefFormatError):
            refs._check_refname(bad)
    with pytest.warns(DeprecationWarning):
        refs._check_refname(b"refs/tags//v1.0")


def test_empty_component_refused_on_write(refs):
    """Difference: dulwich only warns about ``refs/tags//v1.0`` and writes it; Git
    (and the stack) refuse such names, so the write raises RefFormatError."""
    with pytest.warns(DeprecationWarning), pytest.raises(RefFormatError):
        refs[b"refs/tags//v1.0"] = C1
    assert b"refs/tags//v1.0" not in refs.allkeys()


def test_contains(refs):
    """mirrors: RefsContainerTests.test_contains"""
    assert b"refs/heads/master" in refs
    assert b"refs/heads/bar" not in refs


def test_delitem(refs):
    """mirrors: RefsContainerTests.test_delitem, DiskRefsContainerTests.test_delitem"""
    assert refs[b"refs/heads/master"] == C1
    del refs[b"refs/heads/master"]
    with pytest.raises(KeyError):
        refs[b"refs/heads/master"]
    assert refs.stack.read_ref("refs/heads/master") is None


def test_remove_if_equals(refs):
    """mirrors: RefsContainerTests.test_remove_if_equals"""
    assert not refs.remove_if_equals(b"HEAD", b"c0ffee")
    assert refs[b"HEAD"] == C1
    assert refs.remove_if_equals(b"refs/tags/refs-0.2", T2)
    assert refs.remove_if_equals(b"refs/tags/refs-0.2", ZERO_SHA)  # missing == zero
    assert b"refs/tags/refs-0.2" not in refs
    assert refs.remove_if_equals(b"refs/tags/refs-0.2", None)  # missing: still True


def test_import_refs_name(refs):
    """mirrors: RefsContainerTests.test_import_refs_name"""
    refs[b"refs/remotes/origin/other"] = TWOS
    refs.import_refs(b"refs/remotes/origin", {b"master": C1})
    assert refs[b"refs/remotes/origin/master"] == C1
    assert refs[b"refs/remotes/origin/other"] == TWOS


def test_import_refs_base_trailing_slash(refs):
    """mirrors: RefsContainerTests.test_import_refs_base_trailing_slash"""
    refs.import_refs(b"refs/tags/", {b"v1.0": C1})
    assert refs[b"refs/tags/v1.0"] == C1
    assert b"refs/tags//v1.0" not in refs.allkeys()


def test_import_refs_name_prune(refs):
    """mirrors: RefsContainerTests.test_import_refs_name_prune"""
    refs[b"refs/remotes/origin/other"] = TWOS
    refs.import_refs(b"refs/remotes/origin", {b"master": C1}, prune=True)
    assert refs[b"refs/remotes/origin/master"] == C1
    assert b"refs/remotes/origin/other" not in refs


def test_import_refs_is_one_transaction(refs):
    """Ours: import_refs writes one table (atomic), deletes None values, logs."""
    n = len(refs.stack.names)
    refs[b"refs/remotes/origin/gone"] = TWOS
    refs.import_refs(b"refs/remotes/origin",
                     {b"a": ONES, b"b": TWOS, b"gone": None, b"c/d": THREES},
                     message=b"fetch origin")
    assert len(refs.stack.names) <= n + 2
    assert refs.as_dict(b"refs/remotes/origin") == {b"a": ONES, b"b": TWOS, b"c/d": THREES}
    uis = {refs.stack.read_ref(f"refs/remotes/origin/{x}").update_index for x in "ab"}
    assert len(uis) == 1
    [entry] = refs.read_reflog(b"refs/remotes/origin/a")
    assert entry.message == b"fetch origin" and entry.committer == WHO
    with pytest.raises(RefFormatError):  # one bad name: nothing is written
        refs.import_refs(b"refs/remotes/origin", {b"x": ONES, b"bad..name": ONES})
    assert b"refs/remotes/origin/x" not in refs


# -- DiskRefsContainerTests that are not about files -----------------------------------


def test_get_peeled(refs):
    """mirrors: DiskRefsContainerTests.test_get_peeled_not_packed. Difference: a
    plain (val1) record returns None ("unknown, peel it yourself", as Git's reftable
    backend treats it) where dulwich's packed-refs returns the value itself."""
    assert refs.get_peeled(b"refs/tags/refs-0.1") == C1
    assert refs.get_peeled(b"refs/tags/refs-0.2") is None
    assert refs.get_peeled(b"refs/heads/packed") is None
    assert refs.get_peeled(b"HEAD") is None
    assert refs.get_peeled(b"refs/tags/missing") is None
    assert refs.get_packed_refs() == {}


def test_setitem_symbolic(refs):
    """mirrors: DiskRefsContainerTests.test_setitem_symbolic"""
    refs[b"HEAD"] = ONES
    assert refs[b"HEAD"] == ONES
    assert refs.read_loose_ref(b"HEAD") == b"ref: refs/heads/master"
    assert refs.read_loose_ref(b"refs/heads/master") == ONES


def test_add_if_new_symbolic(tmp_path):
    """mirrors: DiskRefsContainerTests.test_add_if_new_symbolic"""
    d = tmp_path / "rt"
    d.mkdir()
    with ReftableRefsContainer(d, stack_options=_options()) as refs:
        refs.set_symbolic_ref(b"HEAD", b"refs/heads/master")
        assert refs.read_ref(b"HEAD") == b"ref: refs/heads/master"
        assert b"refs/heads/master" not in refs
        assert refs.add_if_new(b"HEAD", NINES)
        assert refs.read_ref(b"HEAD") == b"ref: refs/heads/master"
        assert refs[b"HEAD"] == refs[b"refs/heads/master"] == NINES
        assert not refs.add_if_new(b"HEAD", ONES)
        assert refs[b"refs/heads/master"] == NINES


def test_follow(refs):
    """mirrors: DiskRefsContainerTests.test_follow"""
    assert refs.follow(b"HEAD") == ([b"HEAD", b"refs/heads/master"], C1)
    assert refs.follow(b"refs/heads/master") == ([b"refs/heads/master"], C1)
    with pytest.raises(SymrefLoop):
        refs.follow(b"refs/heads/loop")
    assert refs.follow(b"refs/heads/missing") == ([b"refs/heads/missing"], None)


def test_follow_depth_limit_as_dulwich(refs):
    """The same depth limit as dulwich's RefsContainer.follow: 4 hops resolve,
    5 hops raise SymrefLoop."""
    names = [b"refs/chain/%d" % i for i in range(6)]
    refs[names[-1]] = ONES
    for a, b in zip(names, names[1:], strict=False):
        refs.set_symbolic_ref(a, b)
    assert refs.follow(names[1])[1] == ONES  # 4 symrefs, then the value
    with pytest.raises(SymrefLoop):
        refs.follow(names[0])  # 5 symrefs
    assert refs.as_dict(b"refs/chain") == {b"%d" % i: ONES for i in range(1, 6)}


def test_set_overwrite_loop(refs):
    """mirrors: DiskRefsContainerTests.test_set_overwrite_loop"""
    with pytest.raises(SymrefLoop):
        refs.follow(b"refs/heads/loop")
    refs[b"refs/heads/loop"] = C1
    assert refs.follow(b"refs/heads/loop") == ([b"refs/heads/loop"], C1)


def test_cas_on_symref_value(refs):
    """A CAS whose old value is a symref (``ref: ...``), checked under the lock, as
    dulwich compares raw contents."""
    assert not refs.set_if_equals(b"refs/heads/loop", b"ref: refs/heads/other", ONES)
    assert refs.set_if_equals(b"refs/heads/loop", b"ref: refs/heads/loop", ONES)
    assert refs[b"refs/heads/loop"] == ONES
    refs.set_symbolic_ref(b"refs/heads/sym", b"refs/heads/master")
    assert not refs.remove_if_equals(b"refs/heads/sym", b"ref: refs/heads/other")
    assert refs.remove_if_equals(b"refs/heads/sym", b"ref: refs/heads/master")
    assert b"refs/heads/sym" not in refs


def test_delitem_symbolic(refs):
    """mirrors: DiskRefsContainerTests.test_delitem_symbolic"""
    assert refs.read_loose_ref(b"HEAD") == b"ref: refs/heads/master"
    del refs[b"HEAD"]
    with pytest.raises(KeyError):
        refs[b"HEAD"]
    assert refs[b"refs/heads/master"] == C1


def test_remove_if_equals_symref(refs):
    """mirrors: DiskRefsContainerTests.test_remove_if_equals_symref"""
    assert not refs.remove_if_equals(b"HEAD", C1)  # HEAD holds a symref, not C1
    assert refs.remove_if_equals(b"refs/heads/master", C1)
    with pytest.raises(KeyError):
        refs[b"refs/heads/master"]
    with pytest.raises(KeyError):
        refs[b"HEAD"]  # dangling now
    assert refs.read_loose_ref(b"HEAD") == b"ref: refs/heads/master"
    assert b"HEAD" in refs and b"HEAD" in refs.allkeys()


def test_remove_if_equals_peeled_tag(refs):
    """mirrors: DiskRefsContainerTests.test_remove_if_equals_packed,
    test_remove_packed_without_peeled (a val2 tag is removed by its own id)"""
    assert refs[b"refs/tags/refs-0.1"] == T1
    assert not refs.remove_if_equals(b"refs/tags/refs-0.1", C1)  # not by its peeled id
    assert refs.remove_if_equals(b"refs/tags/refs-0.1", T1)
    with pytest.raises(KeyError):
        refs[b"refs/tags/refs-0.1"]


def test_delete_all_and_recreate(refs):
    """mirrors: DiskRefsContainerTests.test_delete_refs_container, test_remove_parent"""
    refs[b"refs/heads/foo/bar"] = T1
    for ref in refs.allkeys():
        del refs[ref]
    assert refs.allkeys() == set()
    refs[b"refs/heads/foo"] = T1  # the former directory is free again
    assert refs[b"refs/heads/foo"] == T1


def test_read_ref(refs):
    """mirrors: DiskRefsContainerTests.test_read_ref, test_read_loose_ref"""
    assert refs.read_ref(b"HEAD") == b"ref: refs/heads/master"
    assert refs.read_ref(b"refs/heads/packed") == C1
    assert refs.read_ref(b"nonexistent") is None
    refs[b"refs/heads/foo"] = T1
    assert refs.read_ref(b"refs/heads/foo/bar") is None


def test_read_loose_ref_escape(refs, tmp_path):
    """mirrors: DiskRefsContainerTests.test_read_loose_ref_escape (a name is never
    a path: nothing outside the stack is read)"""
    (tmp_path / "secret").write_bytes(C1 + b"\n")
    assert refs.read_loose_ref(b"../secret") is None
    with pytest.raises(KeyError):
        refs[b"../secret"]
    assert refs.read_loose_ref(b"/etc/passwd") is None


def test_symref_target_escape_refused(refs):
    """mirrors: DiskRefsContainerTests.test_set_if_equals_symref_target_escape,
    test_add_if_new_symref_target_escape. Such a symref cannot be made through the
    container; one written by another tool makes writes through it fail."""
    with pytest.raises(RefFormatError):
        refs.set_symbolic_ref(b"refs/heads/evil", b"../escape")
    from reftable import RefRecord

    st = refs.stack
    st.add(lambda w: w.add_ref(RefRecord.symref("refs/heads/evil", st.next_update_index(),
                                                "../escape")))
    n = len(st.names)
    with pytest.raises(RefFormatError):
        refs.set_if_equals(b"refs/heads/evil", None, ONES)
    with pytest.raises(RefFormatError):
        refs.add_if_new(b"refs/heads/evil", ONES)
    assert len(st.names) == n


def test_symref_target_bad_name_refused(refs):
    """Difference from DiskRefsContainerTests.test_set_if_equals_symref_target_bad_name
    and test_add_if_new_symref_target_bad_name: dulwich writes through a symref to
    ``refs/heads/foo..bar``; the stack refuses to create a ref Git would refuse."""
    from reftable import RefRecord

    st = refs.stack
    st.add(lambda w: w.add_ref(RefRecord.symref("refs/heads/evil", st.next_update_index(),
                                                "refs/heads/foo..bar")))
    with pytest.raises(RefFormatError):
        refs.set_if_equals(b"refs/heads/evil", None, ONES)


def test_non_ascii(refs):
    """mirrors: DiskRefsContainerTests.test_non_ascii"""
    name = "refs/tags/schön".encode()
    refs[name] = THREES
    assert refs.as_dict()[name] == THREES
    assert refs.stack.read_ref("refs/tags/schön").value == _raw(THREES)


def test_cyrillic(refs):
    """mirrors: DiskRefsContainerTests.test_cyrillic (a name that is not UTF-8
    round-trips byte for byte)"""
    name = b"refs/heads/" + b"\xcd\xee\xe2\xe0\xff\xe2\xe5\xf2\xea\xe01"
    refs[name] = THREES
    assert refs.allkeys() == ALL_KEYS | {name}
    assert refs.subkeys(b"refs/") == {k[len(b"refs/"):] for k in ALL_KEYS | {name}
                                      if k.startswith(b"refs/")}
    assert refs[name] == THREES
    del refs[name]
    assert name not in refs


def test_write_unchanged_ref(refs):
    """mirrors: DiskRefsContainerTests.test_write_unchanged_ref_optimization"""
    name = b"refs/heads/unchanged"
    refs[name] = ONES
    n = len(refs.stack.names)
    assert refs.set_if_equals(name, ONES, ONES, message=b"noop")
    assert len(refs.stack.names) == n  # nothing written, no reflog entry
    assert not refs.set_if_equals(name, TWOS, ONES)
    assert refs.set_if_equals(name, ONES, THREES)
    assert refs[name] == THREES


def test_write_with_lock_held(refs):
    """mirrors: DiskRefsContainerTests.test_write_unchanged_ref_with_lock. The stack
    has one lock (``tables.list.lock``); a write while another process holds it
    raises dulwich's FileLocked once the stack's lock timeout has passed."""
    refs.stack.options.lock_timeout_ms = 20
    lock = refs.stack.list_path + ".lock"
    with open(lock, "wb") as f:
        f.write(b"held by another process")
    try:
        with pytest.raises(FileLocked):
            refs[b"refs/heads/locktest"] = TWOS
        with pytest.raises(FileLocked):
            refs.add_if_new(b"refs/heads/locktest", TWOS)
        assert refs.set_if_equals(b"refs/heads/master", None, C1)  # no write needed
    finally:
        os.unlink(lock)
    refs[b"refs/heads/locktest"] = TWOS
    assert refs[b"refs/heads/locktest"] == TWOS


def test_add_packed_refs(refs):
    """mirrors: DiskRefsContainerTests.test_add_packed_refs (set and delete in one
    transaction; HEAD refused), TestReftableRefsContainer.test_packed_refs"""
    n = len(refs.stack.names)
    refs.add_packed_refs({b"refs/heads/packed": TWOS, b"refs/heads/new": THREES,
                          b"refs/tags/refs-0.2": None})
    assert refs[b"refs/heads/packed"] == TWOS
    assert refs[b"refs/heads/new"] == THREES
    assert b"refs/tags/refs-0.2" not in refs
    assert len(refs.stack.names) <= n + 1
    with pytest.raises(ValueError):
        refs.add_packed_refs({b"HEAD": ONES})
    refs.add_packed_refs({})


def test_pack_refs_compacts(refs):
    """dulwich's gc/maintenance call pack_refs(): it compacts the stack to one table."""
    for i in range(4):
        refs[b"refs/heads/b%d" % i] = ONES
    refs.pack_refs()
    assert len(refs.stack.names) == 1
    assert refs[b"refs/heads/b3"] == ONES and refs[b"HEAD"] == C1


# -- TestReftableRefsContainer (dulwich tests/test_reftable.py) ------------------------


@pytest.fixture
def empty(tmp_path: Path):
    d = tmp_path / "rt"
    d.mkdir()
    with ReftableRefsContainer(d, committer=WHO,
                               stack_options=_options(auto_compact=False)) as c:
        yield c


def test_empty_container(empty):
    """mirrors: TestReftableRefsContainer.test_empty_container. Difference: dulwich's
    reftable container raises KeyError from read_loose_ref; we return None, as the
    RefsContainer contract says."""
    assert empty.allkeys() == set()
    assert empty.read_loose_ref(b"refs/heads/master") is None
    assert empty.as_dict() == {}


def test_add_set_remove_ref(empty):
    """mirrors: TestReftableRefsContainer.test_add_ref, test_set_ref, test_remove_ref,
    test_multiple_table_files"""
    a, b, c = b"a" * 40, b"b" * 40, b"c" * 40
    assert empty.add_if_new(b"refs/heads/master", a)
    assert empty.read_loose_ref(b"refs/heads/master") == a
    assert not empty.add_if_new(b"refs/heads/master", b)
    assert empty.set_if_equals(b"refs/heads/master", a, b)
    assert not empty.set_if_equals(b"refs/heads/master", a, c)
    assert empty.read_loose_ref(b"refs/heads/master") == b
    assert empty.add_if_new(b"refs/heads/main", c)
    assert len(empty.stack.names) >= 2
    assert empty.remove_if_equals(b"refs/heads/master", b)
    assert b"refs/heads/master" not in empty.allkeys()
    assert not empty.remove_if_equals(b"refs/heads/master", b)


def test_symbolic_ref(empty):
    """mirrors: TestReftableRefsContainer.test_symbolic_ref"""
    empty.add_if_new(b"refs/heads/master", ONES)
    empty.set_symbolic_ref(b"HEAD", b"refs/heads/master")
    assert empty.read_loose_ref(b"HEAD") == b"ref: refs/heads/master"
    assert b"HEAD" in empty.allkeys()
    assert empty[b"HEAD"] == ONES


def test_hostile_tables_list(empty):
    """mirrors: TestReftableRefsContainer.test_get_table_files_rejects_traversal,
    test_allkeys_rejects_traversal (the stack refuses the list: FormatError)"""
    for bad in (b"../../evil.ref\n", b"/etc/hostname\n", b"..\n", b"sub/dir.ref\n"):
        with open(empty.stack.list_path, "wb") as f:
            f.write(bad)
        with pytest.raises(FormatError):
            empty.allkeys()


# -- NamespacedRefsContainer over ours (dulwich tests/test_refs.py) ---------------------


def test_namespaced_over_reftable(empty):
    """mirrors: NamespacedRefsContainerTests.test_setitem_and_getitem,
    test_head_not_namespaced, test_isolation_between_namespaces, test_remove_if_equals"""
    foo = NamespacedRefsContainer(empty, b"foo")
    bar = NamespacedRefsContainer(empty, b"bar")
    foo[b"refs/heads/master"] = ONES
    bar[b"refs/heads/master"] = TWOS
    foo[b"HEAD"] = THREES
    assert empty[b"refs/namespaces/foo/refs/heads/master"] == ONES
    assert foo[b"refs/heads/master"] == ONES and bar[b"refs/heads/master"] == TWOS
    assert empty[b"HEAD"] == THREES
    assert foo.allkeys() == {b"HEAD", b"refs/heads/master"}
    assert foo.remove_if_equals(b"refs/heads/master", ONES)
    assert b"refs/heads/master" not in foo and bar[b"refs/heads/master"] == TWOS


# -- Our own: reflogs ------------------------------------------------------------------


def test_reflog_written_and_read_back(empty):
    empty.set_if_equals(b"refs/heads/main", None, ONES, committer=b"A U Thor <a@x.org>",
                        timestamp=1_700_000_000, timezone=19800, message=b"create")
    empty.set_if_equals(b"refs/heads/main", ONES, TWOS, committer=b"B <b@x.org>",
                        timestamp=1_700_000_100, timezone=-3600,
                        message=b"commit:\n  two  lines\n")
    recs = logs_of(empty, "refs/heads/main")  # newest first
    assert [r.message for r in recs] == ["commit: two lines\n", "create\n"]
    assert [(r.name, r.email) for r in recs] == [("B", "b@x.org"), ("A U Thor", "a@x.org")]
    assert [r.time for r in recs] == [1_700_000_100, 1_700_000_000]
    assert [r.tz_offset for r in recs] == [-100, 530]
    zero = b"\0" * 20
    assert [(r.old_id, r.new_id) for r in recs] == [(_raw(ONES), _raw(TWOS)), (zero, _raw(ONES))]
    entries = list(empty.read_reflog(b"refs/heads/main"))  # oldest first, dulwich form
    assert [(e.old_sha, e.new_sha) for e in entries] == [(ZERO_SHA, ONES), (ONES, TWOS)]
    assert [e.timezone for e in entries] == [19800, -3600]
    assert entries[0].committer == b"A U Thor <a@x.org>"
    assert entries[1].message == b"commit: two lines"
    # deleting the branch deletes its reflog, as Git does
    empty.remove_if_equals(b"refs/heads/main", TWOS, timestamp=1_700_000_200, timezone=0,
                           message=b"branch: deleted")
    assert logs_of(empty, "refs/heads/main") == []
    assert list(empty.read_reflog(b"refs/heads/main")) == []


def test_reflog_through_head_logs_the_branch(empty):
    """As dulwich's DiskRefsContainer: an update through HEAD is logged for the branch
    it updates (see docs/dulwich.md for HEAD's own reflog)."""
    empty.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    assert empty.add_if_new(b"HEAD", ONES, message=b"commit (initial): x")
    assert empty.set_if_equals(b"HEAD", ONES, TWOS, message=b"commit: y")
    assert [e.message for e in empty.read_reflog(b"refs/heads/main")] == [
        b"commit (initial): x", b"commit: y"]


def test_no_reflog_without_message_unless_always_log(tmp_path):
    d = tmp_path / "rt"
    d.mkdir()
    with ReftableRefsContainer(d, committer=WHO, stack_options=_options()) as c:
        c[b"refs/heads/a"] = ONES
        assert logs_of(c, "refs/heads/a") == []
    with ReftableRefsContainer(d, committer=WHO, always_log=True,
                               stack_options=_options()) as c:
        c[b"refs/heads/a"] = TWOS
        [rec] = logs_of(c, "refs/heads/a")
        assert (rec.old_id, rec.new_id, rec.message) == (_raw(ONES), _raw(TWOS), "\n")


def test_logger_callback_called_as_dulwich(tmp_path):
    d = tmp_path / "rt"
    d.mkdir()
    calls: list[tuple[Any, ...]] = []
    with ReftableRefsContainer(d, committer=WHO, stack_options=_options(),
                               logger=lambda *a: calls.append(a)) as c:
        c[b"refs/heads/a"] = ONES  # no message: not called
        c.set_if_equals(b"refs/heads/a", ONES, TWOS, committer=WHO, timestamp=5,
                        timezone=0, message=b"m")
    assert calls == [(b"refs/heads/a", ONES, TWOS, WHO, 5, 0, b"m")]


def test_conversions():
    assert tz_seconds_to_git(3600) == 100
    assert tz_seconds_to_git(-19800) == -530
    assert tz_seconds_to_git(0) == 0
    assert tz_seconds_to_git(45 * 60) == 45
    assert tz_git_to_seconds(-530) == -19800 and tz_git_to_seconds(1245) == 45900
    for s in (0, 60, -60, 3600, -34200, 50400, -43200):
        assert tz_git_to_seconds(tz_seconds_to_git(s)) == s
    with pytest.raises(ValueError):
        tz_seconds_to_git(30)
    assert normalize_reflog_message(b"  a\n\tb  c \n") == b"a b c"
    assert split_identity(b"Jane Doe <jane@example.com>") == ("Jane Doe", "jane@example.com")
    assert split_identity(b"nobody") == ("nobody", "")


# -- Our own: concurrency ----------------------------------------------------------------


def test_two_containers_cas_conflict(stack_dir):
    """Two containers on one stack: a stale expectation returns False (no exception),
    as in dulwich, and nothing is written."""
    with ReftableRefsContainer(stack_dir, stack_options=_options()) as a, \
            ReftableRefsContainer(stack_dir, stack_options=_options()) as b:
        assert a[b"refs/heads/master"] == C1
        assert b.set_if_equals(b"refs/heads/master", C1, ONES)
        assert a[b"refs/heads/master"] == ONES  # a sees b's write
        ui = a.stack.merged.max_update_index
        assert not a.set_if_equals(b"refs/heads/master", C1, TWOS)
        assert not a.remove_if_equals(b"refs/heads/master", C1)
        assert b.add_if_new(b"refs/heads/new", ONES)
        assert not a.add_if_new(b"refs/heads/new", TWOS)
        a.stack.reload()
        assert a.stack.merged.max_update_index == ui + 1  # only b's add_if_new
        assert b[b"refs/heads/master"] == ONES and b[b"refs/heads/new"] == ONES


def test_cas_checked_under_the_lock(stack_dir, monkeypatch):
    """The other writer commits between our read and our transaction: the
    expectation fails under the lock, set_if_equals returns False."""
    with ReftableRefsContainer(stack_dir, stack_options=_options()) as a, \
            ReftableRefsContainer(stack_dir, stack_options=_options()) as b:
        real = a.stack.transaction

        def racing(*args: Any, **kw: Any) -> Any:
            b[b"refs/heads/master"] = TWOS  # sneaks in after a's check
            return real(*args, **kw)

        monkeypatch.setattr(a.stack, "transaction", racing)
        assert not a.set_if_equals(b"refs/heads/master", C1, ONES)
        monkeypatch.setattr(a.stack, "transaction", real)
        assert b[b"refs/heads/master"] == TWOS

        def racing_create(*args: Any, **kw: Any) -> Any:
            b[b"refs/heads/fresh"] = TWOS
            return real(*args, **kw)

        monkeypatch.setattr(a.stack, "transaction", racing_create)
        assert not a.add_if_new(b"refs/heads/fresh", ONES)
        monkeypatch.setattr(a.stack, "transaction", real)
        assert a[b"refs/heads/fresh"] == TWOS


def test_concurrent_cas_counter(stack_dir):
    """Threads with their own containers bump a ref by CAS until they succeed; no
    update is lost and the reflog is one unbroken chain."""
    per_thread, threads = 15, 3
    errors: list[BaseException] = []

    def bump(k: int) -> None:
        try:
            with ReftableRefsContainer(stack_dir, committer=WHO,
                                       stack_options=_options(lock_timeout_ms=10_000)) as c:
                done = 0
                while done < per_thread:
                    cur = c[b"refs/heads/counter"]
                    nxt = b"%040x" % (int(cur, 16) + 1)
                    if c.set_if_equals(b"refs/heads/counter", cur, nxt,
                                       message=b"bump %d" % k):
                        done += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    with ReftableRefsContainer(stack_dir, stack_options=_options()) as c:
        c[b"refs/heads/counter"] = b"%040x" % 1
        ts = [threading.Thread(target=bump, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
        assert int(c[b"refs/heads/counter"], 16) == 1 + per_thread * threads
        chain = list(c.read_reflog(b"refs/heads/counter"))
        assert len(chain) == per_thread * threads
        for prev, nxt in zip(chain, chain[1:], strict=False):
            assert prev.new_sha == nxt.old_sha


# -- Our own: object formats, construction ---------------------------------------------


def test_sha256(tmp_path):
    d = tmp_path / "rt"
    d.mkdir()
    h = b"ab" * 32
    with ReftableRefsContainer(d, object_format="sha256", stack_options=_options()) as c:
        assert c.stack.hash == "sha256" and c.object_format.name == "sha256"
        c[b"refs/heads/main"] = h
        assert c[b"refs/heads/main"] == h
        with pytest.raises(ValueError):
            c[b"refs/heads/short"] = ONES
        assert c.add_if_new(b"refs/heads/x", h)
        assert c.remove_if_equals(b"refs/heads/x", b"0" * 64) is False
    with pytest.raises(ValueError):
        ReftableRefsContainer(d, object_format="sha1")
    with ReftableRefsContainer(d) as c:  # detected from the tables
        assert c.stack.hash == "sha256"


def test_stack_instance_and_pathlike(stack_dir):
    st = Stack.open(str(stack_dir), _options())
    c = ReftableRefsContainer(st)
    assert c.stack is st and c[b"HEAD"] == C1
    c.close()
    assert st.read_ref("HEAD") is not None  # not closed: not ours
    with pytest.raises(ValueError):
        ReftableRefsContainer(st, object_format="sha256")
    st.close()
    with ReftableRefsContainer(Path(stack_dir)) as c2:  # os.PathLike
        assert c2[b"HEAD"] == C1
        assert "reftable" in repr(c2)


def test_git_written_stack(tmp_path):
    """Read a stack Git wrote (fixture 'tiny'): refs, symrefs, peeled tag, reflogs."""
    if "tiny" not in SCENARIOS:
        pytest.skip("Git fixtures not available")
    d = copy_fixture("tiny", tmp_path / "reftable")
    exp = load_expected("tiny")
    with ReftableRefsContainer(d) as c:
        want = {}
        for line in exp["git_for_each_ref"]:
            name, value, rest = line.split(" ", 2)
            want[name.encode()] = value.encode()
        assert c.as_dict() == want
        assert c.get_symrefs()[b"HEAD"] == b"refs/heads/main"
        tag = next(r for r in exp["merged"]["refs"] if r["name"] == "refs/tags/v1")
        assert tag["type"] == "val2"
        assert c.get_peeled(b"refs/tags/v1") == tag["target_value"].encode()
        log = list(c.read_reflog(b"refs/heads/main"))
        assert log and log[0].old_sha == ZERO_SHA
        assert all(not e.message.endswith(b"\n") for e in log)
        assert c.set_if_equals(b"refs/heads/topic", want[b"refs/heads/topic"], ONES,
                               message=b"after git")
        assert c[b"refs/heads/topic"] == ONES


# -- Our own: dulwich repositories using the container ----------------------------------


def test_memory_repo_commits(empty):
    repo = MemoryRepo()
    repo.refs = empty
    tree = Tree()
    repo.object_store.add_object(tree)
    empty.set_symbolic_ref(b"HEAD", b"refs/heads/master")
    c1 = repo.do_commit(message=b"one", committer=WHO, author=WHO, tree=tree.id,
                        commit_timestamp=1_700_000_000, commit_timezone=7200)
    c2 = repo.do_commit(message=b"two", committer=WHO, author=WHO, tree=tree.id,
                        commit_timestamp=1_700_000_060, commit_timezone=7200)
    assert repo.head() == c2 and repo.refs[b"refs/heads/master"] == c2
    assert repo[c2].parents == [c1]
    log = list(empty.read_reflog(b"refs/heads/master"))
    assert [(e.new_sha, e.message, e.timezone) for e in log] == [
        (c1, b"commit: one", 7200), (c2, b"commit: two", 7200)]
    [rec, _] = logs_of(empty, "refs/heads/master")
    assert rec.tz_offset == 200 and rec.time == 1_700_000_060
    assert repo.get_refs() == {b"HEAD": c2, b"refs/heads/master": c2}


def _reftable_repo(path: Path) -> Repo:
    """A repository laid out as ``git init --ref-format=reftable`` lays it out."""
    Repo.init(str(path), mkdir=True)
    git = path / ".git"
    with open(git / "config", "ab") as f:
        f.write(b"[extensions]\n\trefStorage = reftable\n")
    cfg = (git / "config").read_bytes().replace(b"repositoryformatversion = 0",
                                                 b"repositoryformatversion = 1")
    (git / "config").write_bytes(cfg)
    (git / "HEAD").write_bytes(b"ref: refs/heads/.invalid\n")
    os.makedirs(git / "reftable", exist_ok=True)
    return Repo(str(path))


def test_disk_repo_with_reftable(tmp_path):
    repo = _reftable_repo(tmp_path / "repo")
    repo.refs = ReftableRefsContainer.for_repo(repo, committer=WHO)
    refs = repo.refs
    assert isinstance(refs, ReftableRefsContainer)
    refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    wt = repo.get_worktree()
    c1 = wt.commit(message=b"first", committer=WHO, author=WHO,
                   commit_timestamp=1_700_000_000, commit_timezone=0)
    c2 = wt.commit(message=b"second", committer=WHO, author=WHO,
                   commit_timestamp=1_700_000_001, commit_timezone=0)
    assert repo.head() == c2 and repo[c2].parents == [c1]
    assert [e.message for e in refs.read_reflog(b"refs/heads/main")] == [
        b"commit: first", b"commit: second"]

    # an annotated tag is stored with its peeled id (object store given by for_repo)
    tag = Tag()
    tag.name, tag.message, tag.tagger = b"v1", b"release\n", WHO
    tag.tag_time, tag.tag_timezone, tag.object = 1_700_000_002, 0, (Commit, c2)
    repo.object_store.add_object(tag)
    refs[b"refs/tags/v1"] = tag.id
    rec = refs.stack.read_ref("refs/tags/v1")
    assert rec.value_type == RefValueType.VAL2 and rec.target_value == _raw(c2)
    assert refs.get_peeled(b"refs/tags/v1") == c2 == repo.get_peeled(b"refs/tags/v1")
    refs[b"refs/tags/light"] = c1
    assert refs.stack.read_ref("refs/tags/light").value_type == RefValueType.VAL1

    from dulwich import porcelain

    porcelain.branch_create(repo, "topic")
    assert sorted(porcelain.branch_list(repo)) == [b"main", b"topic"]
    assert repo.refs[b"refs/heads/topic"] == c2
    porcelain.branch_delete(repo, "topic")
    assert b"refs/heads/topic" not in repo.refs
    # nothing went to loose refs or files-backend reflogs
    assert not (tmp_path / "repo" / ".git" / "logs" / "refs" / "heads" / "main").exists()
    assert not (tmp_path / "repo" / ".git" / "refs" / "heads" / "main").exists()

    # reopened: dulwich picks its own container, ours sees the same refs
    again = Repo(str(tmp_path / "repo"))
    again.refs = ReftableRefsContainer.for_repo(again, committer=WHO)
    assert again.refs.as_dict() == refs.as_dict()
    assert again.head() == c2


def test_stack_log_entry_api_matches(empty):
    """The container's reflog entries are exactly what a Transaction with the same
    LogEntry writes (same conversion of identity, time, timezone, message)."""
    empty.set_if_equals(b"refs/heads/a", None, ONES, committer=b"N <e@x>", timestamp=7,
                        timezone=-16200, message=b"m")
    with empty.stack.transaction(log=LogEntry("N", "e@x", "m", 7, -430)) as tx:
        tx.update("refs/heads/b", _raw(ONES))
    a = logs_of(empty, "refs/heads/a")[0]
    b = logs_of(empty, "refs/heads/b")[0]
    fields = ("name", "email", "time", "tz_offset", "message", "old_id", "new_id")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


def test_for_repo_honours_the_repository_config(tmp_path):
    from reftable import RepositoryError

    _reftable_repo(tmp_path / "repo")
    with open(tmp_path / "repo" / ".git" / "config", "ab") as f:
        f.write(b"[reftable]\n\tblockSize = 1024\n[core]\n\tsharedRepository = 0640\n")
    refs = ReftableRefsContainer.for_repo(Repo(str(tmp_path / "repo")), committer=WHO)
    refs[b"refs/heads/main"] = ONES
    st = refs.stack
    assert st.options.block_size == 1024 and st.tables[-1].block_size == 1024
    assert os.stat(st.table_path(st.names[-1])).st_mode & 0o777 == 0o640
    refs.close()
    Repo.init(str(tmp_path / "files"), mkdir=True)
    with pytest.raises(RepositoryError, match="'files'"):
        ReftableRefsContainer.for_repo(Repo(str(tmp_path / "files")), committer=WHO)
    assert not (tmp_path / "files" / ".git" / "reftable").exists()
