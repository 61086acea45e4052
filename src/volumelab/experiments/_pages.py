"""Rows read straight from a SQLite file's pages, for salvaging a store whose b-tree is broken.

When a results database is truncated or overwritten, SQLite cannot walk the table's b-tree
(an interior page, allocated late, is often gone) although most leaf pages, which hold the
rows, are intact. This module reads every page of the file (and of its write-ahead log)
that is a *table leaf page* and decodes its cells' records, following the SQLite file
format (https://www.sqlite.org/fileformat2.html: the page header, the cell pointer array,
varints, the record format and overflow chains). Pages on the free list are skipped, so
rows deleted on purpose are not brought back. It returns raw records; the caller keeps
only those that verify (a store row's checksum), so a page misread here can never become
a result.
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["leaf_records"]

_TABLE_LEAF = 0x0D
_HEADER = b"SQLite format 3\x00"


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and the offset after it (1-9 bytes, big-endian, 7 bits a byte; the ninth gives 8)."""
    value = 0
    for index in range(8):
        byte = data[at + index]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + index + 1
    return (value << 8) | data[at + 8], at + 9


def _value(serial: int, data: bytes, at: int):
    """The value of serial type ``serial`` at ``at`` and its size."""
    if serial == 0:
        return None, 0
    if 1 <= serial <= 6:
        size = (1, 2, 3, 4, 6, 8)[serial - 1]
        return int.from_bytes(data[at:at + size], "big", signed=True), size
    if serial == 7:
        return struct.unpack(">d", data[at:at + 8])[0], 8
    if serial in (8, 9):
        return serial - 8, 0
    if serial >= 12:
        size = (serial - 12) // 2 if serial % 2 == 0 else (serial - 13) // 2
        raw = bytes(data[at:at + size])
        if len(raw) != size:
            raise ValueError("record runs past its payload")
        return (raw if serial % 2 == 0 else raw.decode("utf-8")), size
    raise ValueError(f"reserved serial type {serial}")


def _record(payload: bytes) -> list:
    header_size, at = _varint(payload, 0)
    serials = []
    while at < header_size:
        serial, at = _varint(payload, at)
        serials.append(serial)
    values, at = [], header_size
    for serial in serials:
        value, size = _value(serial, payload, at)
        values.append(value)
        at += size
    if at > len(payload):
        raise ValueError("record runs past its payload")
    return values


class _Pages:
    def __init__(self, data: bytes, page_size: int, usable: int, extra: dict[int, bytes]) -> None:
        self.data, self.page_size, self.usable, self.extra = data, page_size, usable, extra

    def page(self, number: int) -> bytes | None:
        if number in self.extra:
            return self.extra[number]
        start = (number - 1) * self.page_size
        page = self.data[start:start + self.page_size]
        return page if len(page) == self.page_size else None

    def count(self) -> int:
        return max(len(self.data) // self.page_size, max(self.extra, default=0))

    def free(self) -> set[int]:
        """Pages on the free list (trunk and leaf pages), as far as the list can be read."""
        found: set[int] = set()
        trunk = int.from_bytes(self.data[32:36], "big") if len(self.data) >= 36 else 0
        while trunk and trunk not in found:
            page = self.page(trunk)
            if page is None:
                break
            found.add(trunk)
            leaves = int.from_bytes(page[4:8], "big")
            if leaves > (self.usable - 8) // 4:
                break
            found.update(int.from_bytes(page[8 + 4 * i:12 + 4 * i], "big") for i in range(leaves))
            trunk = int.from_bytes(page[0:4], "big")
        return found

    def payload(self, page: bytes, at: int) -> bytes:
        """The payload of the table-leaf cell at ``at`` (with its overflow chain)."""
        size, at = _varint(page, at)
        _, at = _varint(page, at)  # the rowid
        most = self.usable - 35
        if size <= most:
            return bytes(page[at:at + size])
        least = ((self.usable - 12) * 32 // 255) - 23
        local = least + (size - least) % (self.usable - 4)
        local = local if local <= most else least
        parts, remaining = [bytes(page[at:at + local])], size - local
        following = int.from_bytes(page[at + local:at + local + 4], "big")
        seen = set()
        while remaining > 0:
            if following in seen or following == 0:
                raise ValueError("overflow chain broken")
            seen.add(following)
            overflow = self.page(following)
            if overflow is None:
                raise ValueError("overflow page missing")
            chunk = overflow[4:4 + min(remaining, self.usable - 4)]
            parts.append(bytes(chunk))
            remaining -= len(chunk)
            following = int.from_bytes(overflow[0:4], "big")
        return b"".join(parts)


def _wal_pages(path: Path, page_size: int) -> dict[int, bytes]:
    """The newest copy of each page in the write-ahead log beside ``path`` (committed or not: the caller
    verifies every row it reads)."""
    wal = path.with_name(path.name + "-wal")
    if not wal.is_file():
        return {}
    data = wal.read_bytes()
    pages: dict[int, bytes] = {}
    at = 32
    while at + 24 + page_size <= len(data):
        number = int.from_bytes(data[at:at + 4], "big")
        if number:
            pages[number] = data[at + 24:at + 24 + page_size]
        at += 24 + page_size
    return pages


def leaf_records(path: Path) -> list[list]:
    """Every record of every table leaf page of the SQLite file ``path`` that decodes (free pages skipped)."""
    data = Path(path).read_bytes()
    if len(data) < 100 or not data.startswith(_HEADER):
        return []
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return []
    usable = page_size - data[20]
    pages = _Pages(data, page_size, usable, _wal_pages(Path(path), page_size))
    free = pages.free()
    records = []
    for number in range(1, pages.count() + 1):
        page = pages.page(number)
        if page is None or number in free:
            continue
        start = 100 if number == 1 else 0
        if page[start] != _TABLE_LEAF:
            continue
        cells = int.from_bytes(page[start + 3:start + 5], "big")
        for index in range(cells):
            pointer = start + 8 + 2 * index
            at = int.from_bytes(page[pointer:pointer + 2], "big")
            if not start + 8 <= at < usable:
                continue
            try:
                records.append(_record(pages.payload(page, at)))
            except (ValueError, IndexError, UnicodeDecodeError, struct.error):
                continue
    return records
