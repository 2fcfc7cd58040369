"""Partitions: which partition a device is in, and which live member owns a partition.

A device's partition is a stable hash of its name, the same in every process and release.
Owners are chosen by rendezvous (highest random weight) hashing: every member scores every
partition and the highest score owns it, so a member joining or leaving moves only the
partitions it wins or held (about P/N of them), never reshuffles the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection


def _score(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def partition_of(device: str, partitions: int) -> int:
    return _score(f"device\0{device}") % partitions


def owner(partition: int, members: Collection[str]) -> str | None:
    """The member that owns `partition` among `members` (None when there are none)."""
    return max(members, key=lambda m: (_score(f"{m}\0{partition}"), m), default=None)


def owned(member: str, members: Collection[str], partitions: int) -> set[int]:
    """The partitions `member` owns when `members` are live (it counts itself in)."""
    everyone = {*members, member}
    return {p for p in range(partitions) if owner(p, everyone) == member}
