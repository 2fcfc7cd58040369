"""Backends: how work and desired state reach agents, and observations come back.

`memory` (one process) and `redis` (a cluster) implement one port (`base.Backend`).
"""

from netfleet.backends.base import Backend, Body, Message
from netfleet.backends.memory import MemoryBackend
from netfleet.backends.redis import RedisBackend


def open_backend(redis_url: str | None) -> Backend:
    """Redis when a URL is given, else the in-process backend."""
    return MemoryBackend() if redis_url is None else RedisBackend(redis_url)


__all__ = ["Backend", "Body", "MemoryBackend", "Message", "RedisBackend", "open_backend"]
