"""Just enough of Git's object database to name an object's type (``%(objecttype)``
of ``for-each-ref``'s default format): loose objects and pack files (``.idx``
version 2, delta chains followed to their base)."""

from __future__ import annotations

import glob
import os
import struct
import zlib
from typing import Optional

__all__ = ["ObjectTypes"]

_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}
_OFS_DELTA, _REF_DELTA = 6, 7


class _Pack:
    def __init__(self, idx_path: str, oid_size: int):
        self.pack_path = idx_path[:-4] + ".pack"
        self.oid_size = oid_size
        with open(idx_path, "rb") as f:
            self.idx = f.read()
        if self.idx[:4] != b"\xfftOc" or struct.unpack(">I", self.idx[4:8])[0] != 2:
            raise ValueError(f"{idx_path}: unsupported pack index")
        self.count = struct.unpack(">I", self.idx[8 + 255 * 4:8 + 256 * 4])[0]
        self._pack: Optional[bytes] = None

    def offset(self, oid: bytes) -> Optional[int]:
        fan = 8
        first = oid[0]
        lo = struct.unpack(">I", self.idx[fan + (first - 1) * 4:fan + first * 4])[0] \
            if first else 0
        hi = struct.unpack(">I", self.idx[fan + first * 4:fan + (first + 1) * 4])[0]
        names = fan + 256 * 4
        n = self.oid_size
        while lo < hi:
            mid = (lo + hi) // 2
            cur = self.idx[names + mid * n:names + (mid + 1) * n]
            if cur == oid:
                offsets = names + self.count * n + self.count * 4
                off = struct.unpack(">I", self.idx[offsets + mid * 4:offsets + mid * 4 + 4])[0]
                if off & 0x80000000:
                    large = offsets + self.count * 4 + (off & 0x7FFFFFFF) * 8
                    off = struct.unpack(">Q", self.idx[large:large + 8])[0]
                return int(off)
            if cur < oid:
                lo = mid + 1
            else:
                hi = mid
        return None

    def data(self) -> bytes:
        if self._pack is None:
            with open(self.pack_path, "rb") as f:
                self._pack = f.read()
        return self._pack


class ObjectTypes:
    """Object types of the repository whose common dir is ``common_dir``."""

    def __init__(self, common_dir: str, hash: str):
        self.objects = os.path.join(common_dir, "objects")
        self.oid_size = 20 if hash == "sha1" else 32
        self._packs: Optional[list[_Pack]] = None

    def packs(self) -> list[_Pack]:
        if self._packs is None:
            self._packs = []
            for p in sorted(glob.glob(os.path.join(self.objects, "pack", "*.idx"))):
                try:
                    self._packs.append(_Pack(p, self.oid_size))
                except (OSError, ValueError):
                    continue
        return self._packs

    def type_of(self, oid: bytes) -> str:
        """``commit``, ``tree``, ``blob`` or ``tag``; ``""`` when the object is not
        found."""
        h = oid.hex()
        try:
            with open(os.path.join(self.objects, h[:2], h[2:]), "rb") as f:
                head = zlib.decompressobj().decompress(f.read(64), 32)
            return head.split(b" ", 1)[0].decode("ascii", "replace")
        except (OSError, zlib.error):
            pass
        for _ in range(64):  # delta chains are bounded
            for pack in self.packs():
                off = pack.offset(oid)
                if off is None:
                    continue
                kind = self._packed_type(pack, off)
                if isinstance(kind, str):
                    return kind
                oid = kind
                break
            else:
                return ""
        return ""

    def _packed_type(self, pack: _Pack, off: int) -> str | bytes:
        """The type of the packed object at ``off``, or the base id of a ref delta."""
        data = pack.data()
        for _ in range(64):
            start = off
            c = data[off]
            kind = (c >> 4) & 7
            off += 1
            while c & 0x80:
                c = data[off]
                off += 1
            if kind in _TYPES:
                return _TYPES[kind]
            if kind == _REF_DELTA:
                return data[off:off + self.oid_size]
            if kind != _OFS_DELTA:
                return ""
            c = data[off]
            rel = c & 0x7F
            off += 1
            while c & 0x80:
                c = data[off]
                off += 1
                rel = ((rel + 1) << 7) | (c & 0x7F)
            off = start - rel
        return ""
