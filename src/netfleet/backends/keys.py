"""Every Redis key netfleet uses, in one place. Nothing else spells a key name.

All keys start with `netfleet:` so a shared Redis can be told apart (and `netfleet cluster
reset` can find them); a partition's keys carry its number in braces, so on Redis Cluster a
partition's streams and state hash to one slot.
"""

from __future__ import annotations

PREFIX = "netfleet"

# Hash: `partitions` (fixed when the cluster is initialised), and its epoch: `epoch` (an id) and
# `started` (Redis's time then, ms); gone with everything else when Redis loses its data.
CLUSTER = f"{PREFIX}:cluster"
DEAD_LETTERS = f"{PREFIX}:dead"  # stream: observations that failed to process, with the reason

AGENTS = "agent"  # membership roles
RECORDERS = "recorder"
WORK_GROUP = "agents"  # consumer group of every work stream
RECORD_GROUP = "recorders"  # consumer group of every observation stream


def work(partition: int) -> str:
    """Stream: tasks and cancels for the devices of one partition, in submission order."""
    return f"{PREFIX}:{{p{partition}}}:work"


def observations(partition: int) -> str:
    """Stream: results, poll outcomes and facts from the devices of one partition."""
    return f"{PREFIX}:{{p{partition}}}:obs"


def state(partition: int) -> str:
    """Hash: the desired state of one partition's devices (device -> entry), the snapshot."""
    return f"{PREFIX}:{{p{partition}}}:state"


def state_changes(partition: int) -> str:
    """Stream: changes to `state(partition)` since, each carrying the device's whole entry."""
    return f"{PREFIX}:{{p{partition}}}:changes"


def members(role: str) -> str:
    """Sorted set: live members of a role, scored by when their heartbeat runs out (ms)."""
    return f"{PREFIX}:members:{role}"


def status(role: str, member: str) -> str:
    """String (JSON), with a TTL: what a member last reported about itself (counters)."""
    return f"{PREFIX}:status:{role}:{member}"


def lease(name: str) -> str:
    """String `holder token`, with a TTL: who owns `name` (a partition) now."""
    return f"{PREFIX}:lease:{name}"


def fence(name: str) -> str:
    """Counter: the last fencing token handed out for `name`; every acquisition takes a new one."""
    return f"{PREFIX}:fence:{name}"


def all_keys() -> str:
    """A SCAN pattern matching every key above."""
    return f"{PREFIX}:*"


def work_lease(partition: int) -> str:
    """Lease name of a partition's work: held by the agent that owns the partition."""
    return f"work{partition}"


def record_lease(partition: int) -> str:
    """Lease name of a partition's observations: held by the controller recording them."""
    return f"record{partition}"


def lease_name(singleton: str) -> str:
    """Lease name of a singleton's work (e.g. "planners"): held by one controller."""
    return f"singleton-{singleton}"


def partition_of_stream(stream: str) -> int:
    """The partition number in a partition's key (work, observations, state, changes)."""
    return int(stream.split("{p", 1)[1].split("}", 1)[0])
