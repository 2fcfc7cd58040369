"""The Redis backend: Streams with consumer groups, leases with fencing tokens, membership.

Every key name comes from `keys`. Stream entries hold one field, `b`, the body as JSON. A
connection error surfaces as BackendUnavailable (never with the URL's password); the client
reconnects by itself on the next call, so callers only retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import (
    BusyLoadingError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from netfleet.backends import keys
from netfleet.backends.base import Body, Message
from netfleet.domain.errors import BackendUnavailable

FIELD = "b"
CHANGES_MAXLEN = 10_000
SOCKET_TIMEOUT = 10.0  # longer than any blocking read we issue

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _encode(body: Body) -> dict[str, str]:
    return {FIELD: json.dumps(body, separators=(",", ":"))}


def _decode(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(fields[FIELD.encode()])
    return body


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        # redis-py's own annotations of stream replies are looser than what it returns.
        self.client: Any = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=5.0,
            health_check_interval=15, retry_on_timeout=False, decode_responses=False)
        self._where = _safe(url)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._groups: set[tuple[str, str]] = set()

    @asynccontextmanager
    async def _call(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError) as exc:
            raise BackendUnavailable(f"Redis at {self._where} did not answer ({what}): "
                                     f"{type(exc).__name__}") from None

    async def init_cluster(self, partitions: int) -> int:
        async with self._call("init"):
            await self.client.hsetnx(keys.CLUSTER, "partitions", partitions)
            stored = await self.client.hget(keys.CLUSTER, "partitions")
        return int(stored) if stored is not None else partitions

    async def ping(self) -> None:
        async with self._call("ping"):
            await self.client.ping()

    # -- membership ------------------------------------------------------------------------
    async def heartbeat(self, role: str, member: str, ttl: float) -> None:
        async with self._call("heartbeat"):
            await self.client.zadd(keys.members(role),
                                   {member: int((time.time() + ttl) * 1000)})

    async def leave(self, role: str, member: str) -> None:
        async with self._call("leave"):
            await self.client.zrem(keys.members(role), member)

    async def members(self, role: str) -> list[str]:
        now = int(time.time() * 1000)
        async with self._call("members"):
            pipe = self.client.pipeline(transaction=False)
            pipe.zremrangebyscore(keys.members(role), "-inf", now)
            pipe.zrangebyscore(keys.members(role), now, "+inf")
            _, live = await pipe.execute()
        return sorted(_text(m) for m in live)

    # -- leases ----------------------------------------------------------------------------
    async def acquire(self, name: str, holder: str, ttl: float) -> int | None:
        async with self._call("acquire"):
            token = await self._acquire(keys=[keys.lease(name), keys.fence(name)],
                                        args=[holder, int(ttl * 1000)])
        return None if token is None else int(token)

    async def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        async with self._call("renew"):
            done = await self._renew(keys=[keys.lease(name)],
                                     args=[f"{holder} {token}", int(ttl * 1000)])
        return bool(done)

    async def release(self, name: str, holder: str, token: int) -> bool:
        async with self._call("release"):
            done = await self._release(keys=[keys.lease(name)], args=[f"{holder} {token}"])
        return bool(done)

    async def lease(self, name: str) -> tuple[str, int] | None:
        async with self._call("lease"):
            held = await self.client.get(keys.lease(name))
        if held is None:
            return None
        holder, _, token = _text(held).rpartition(" ")
        return holder, int(token)

    # -- streams ---------------------------------------------------------------------------
    async def add(self, entries: Mapping[str, Sequence[Body]],
                  *, maxlen: int | None = None) -> None:
        if not any(entries.values()):
            return
        async with self._call("add"):
            pipe = self.client.pipeline(transaction=False)
            for stream, bodies in entries.items():
                for body in bodies:
                    pipe.xadd(stream, _encode(body),
                              maxlen=maxlen, approximate=True)
            await pipe.execute()

    async def _ensure_group(self, group: str, stream: str) -> None:
        if (group, stream) in self._groups:
            return
        try:
            await self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((group, stream))

    async def read(self, group: str, consumer: str, streams: Sequence[str], *, count: int,
                   block: float) -> list[Message]:
        if not streams:
            return []
        async with self._call("read"):
            for stream in streams:
                await self._ensure_group(group, stream)
            try:
                found = await self.client.xreadgroup(
                    group, consumer, dict.fromkeys(streams, ">"), count=count,
                    block=int(block * 1000) if block > 0 else None)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._groups.clear()  # Redis lost them (restarted): create them again
                return []
        return [Message(_text(stream), _text(entry_id), _decode(fields))
                for stream, entries in (found or []) for entry_id, fields in entries
                if fields]

    async def takeover(self, group: str, consumer: str, stream: str) -> list[Message]:
        out: list[Message] = []
        async with self._call("takeover"):
            await self._ensure_group(group, stream)
            start = "-"
            while True:
                pending = await self.client.xpending_range(stream, group, min=start, max="+",
                                                           count=1000)
                if not pending:
                    break
                ids = [p["message_id"] for p in pending]
                counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
                claimed = await self.client.xclaim(stream, group, consumer, 0, ids)
                present = set()
                for entry_id, fields in claimed:
                    if not fields:
                        continue
                    present.add(_text(entry_id))
                    out.append(Message(stream, _text(entry_id), _decode(fields),
                                       counts[_text(entry_id)] + 1))
                gone = [i for i in ids if _text(i) not in present]
                if gone:
                    await self.client.xack(stream, group, *gone)
                if len(pending) < 1000:
                    break
                start = "(" + _text(ids[-1])
        out.sort(key=lambda m: _order(m.id))
        return out

    async def ack(self, group: str, stream: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        async with self._call("ack"):
            await self.client.xack(stream, group, *ids)

    async def backlog(self, group: str, stream: str) -> int:
        async with self._call("backlog"):
            try:
                groups = await self.client.xinfo_groups(stream)
            except ResponseError:
                return 0  # no stream yet
            for info in groups:
                if _text(info["name"]) == group:
                    lag = info.get("lag")
                    pending = int(info.get("pending", 0))
                    if lag is None:  # unknown after trims: count what follows the last read
                        last = _text(info.get("last-delivered-id", b"0-0"))
                        lag = len(await self.client.xrange(stream, "(" + last, "+",
                                                           count=1_000_000))
                    return int(lag) + pending
            return int(await self.client.xlen(stream))

    async def length(self, stream: str) -> int:
        async with self._call("length"):
            return int(await self.client.xlen(stream))

    async def entries(self, stream: str, *, after: str = "0", count: int = 100) -> list[Message]:
        async with self._call("entries"):
            found = await self.client.xrange(stream, "(" + after if after != "0" else "-", "+",
                                             count=count)
        return [Message(stream, _text(i), _decode(f)) for i, f in found]

    # -- desired state ---------------------------------------------------------------------
    async def set_state(self, partition: int, entries: Mapping[str, Body | None]) -> None:
        if not entries:
            return
        async with self._call("set state"):
            pipe = self.client.pipeline(transaction=True)
            for device, entry in entries.items():
                if entry is None:
                    pipe.hdel(keys.state(partition), device)
                else:
                    pipe.hset(keys.state(partition), device, json.dumps(entry))
                pipe.xadd(keys.state_changes(partition),
                          _encode({"device": device, "entry": entry}),
                          maxlen=CHANGES_MAXLEN, approximate=True)
            await pipe.execute()

    async def replace_state(self, partition: int, entries: Mapping[str, Body]) -> None:
        async with self._call("replace state"):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(keys.state(partition))
            if entries:
                pipe.hset(keys.state(partition),
                          mapping={d: json.dumps(e) for d, e in entries.items()})
            pipe.xadd(keys.state_changes(partition),
                      _encode({"snapshot": True}),
                      maxlen=CHANGES_MAXLEN, approximate=True)
            await pipe.execute()

    async def load_state(self, partition: int) -> tuple[dict[str, dict[str, Any]], str]:
        async with self._call("load state"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(keys.state(partition))
            pipe.xrevrange(keys.state_changes(partition), "+", "-", count=1)
            found, last = await pipe.execute()
        position = _text(last[0][0]) if last else "0-0"
        return {_text(d): json.loads(e) for d, e in found.items()}, position

    async def follow(self, positions: Mapping[str, str], *, count: int,
                     block: float) -> list[Message]:
        if not positions:
            return []
        async with self._call("follow"):
            found = await self.client.xread(dict(positions), count=count,
                                            block=int(block * 1000) if block > 0 else None)
        return [Message(_text(stream), _text(i), _decode(f))
                for stream, entries in (found or []) for i, f in entries if f]

    async def close(self) -> None:
        await self.client.aclose()


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
