"""The Redis backend: Streams with consumer groups, leases with fencing tokens, membership.

Every key name comes from `keys`. A stream entry holds one field, `b`, the body as JSON. A
connection error surfaces as BackendUnavailable (never with the URL's password); the client
reconnects by itself on the next call, so callers only retry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from netfleet.backends import keys
from netfleet.backends.base import Body, Message
from netfleet.domain.errors import BackendUnavailable

FIELD = "b"  # the one field of every stream entry: the body as JSON
CHANGES_MAXLEN = 10_000  # entries kept (about) in a partition's change stream
PAGE = 1000  # pending entries claimed per round trip in a takeover

CONNECT_TIMEOUT = 3.0
SOCKET_TIMEOUT = 10.0  # for any reply, a blocked read's included: see MAX_BLOCK
MAX_BLOCK = 8.0  # longest wait asked of Redis, so a blocked read never outlasts its socket
HEALTH_CHECK = 10  # a connection idle this long (s) is PINGed before it is used again
# A connection Redis closed (restart, CLIENT KILL, an idle timeout) shows only when used: one
# retry on a new connection lets that call succeed. Timeouts are not retried (they would
# double the wait of a caller already waiting on a dead server).
RETRY = Retry(EqualJitterBackoff(cap=0.5, base=0.05), retries=2,
              supported_errors=(RedisConnectionError,))

# Times kept in Redis (membership expiry, the epoch's start) are Redis's own clock's, not each
# host's: a host whose clock runs ahead would otherwise keep its members alive too long, or
# drop everyone else's early.
_NOW_MS = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""
# The partition count and the epoch are set together, once: two processes starting at once
# must not leave one's epoch id with the other's start time.
_INIT = _NOW_MS + """
redis.call('HSETNX', KEYS[1], 'partitions', ARGV[1])
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'started', ms)
end
return redis.call('HGET', KEYS[1], 'partitions')
"""
# Leases are compared and changed in one script each: a GET then SET from the client could
# take a lease another holder acquired in between, or extend one it lost.
# A fencing token is at least Redis's clock in microseconds: one taken after Redis lost its
# data (the counters with it) still outranks every token from before, which recorders
# remember. (Exact in Lua's doubles until the year 2255.)
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local now = redis.call('TIME')
local us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local token = redis.call('INCR', KEYS[2])
if token < us then
  token = us
  redis.call('SET', KEYS[2], string.format('%d', token))
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. string.format('%d', token), 'PX', ARGV[2])
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
_HEARTBEAT = _NOW_MS + """
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
return 1
"""
_MEMBERS = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# The entries after an id, counted where they are instead of sent over to be counted.
_COUNT_AFTER = """
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
"""


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True, health_check_interval=HEALTH_CHECK, retry=RETRY)
        self._where = _without_secrets(url)
        self._secrets = _secrets(url)
        self._init = self.client.register_script(_INIT)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self._heartbeat = self.client.register_script(_HEARTBEAT)
        self._members = self.client.register_script(_MEMBERS)
        self._count_after = self.client.register_script(_COUNT_AFTER)

    @asynccontextmanager
    async def _call(self, what: str) -> AsyncIterator[None]:
        """Map the errors of a Redis that cannot serve us now to BackendUnavailable."""
        try:
            yield
        except AuthenticationError as exc:
            raise BackendUnavailable(f"Redis at {self._where} refused netfleet's credentials "
                                     f"({what}): check the user and password in the URL") from exc
        except BusyLoadingError as exc:
            raise BackendUnavailable(f"Redis at {self._where} is still loading its data "
                                     f"({what}); try again shortly") from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BackendUnavailable(f"Redis at {self._where} did not answer ({what}): "
                                     f"{self._scrub(str(exc) or type(exc).__name__)}") from exc

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def init_cluster(self, partitions: int) -> int:
        async with self._call("init cluster"):
            stored = await self._init(keys=[keys.CLUSTER], args=[partitions, uuid.uuid4().hex])
        return int(stored)

    async def epoch(self) -> tuple[str, float] | None:
        async with self._call("read the epoch"):
            epoch, started = await self.client.hmget(keys.CLUSTER, ["epoch", "started"])
        if epoch is None or started is None:
            return None
        return _text(epoch), int(started) / 1000

    async def ping(self) -> None:
        async with self._call("ping"):
            await self.client.ping()

    # -- membership ------------------------------------------------------------------------
    async def heartbeat(self, role: str, member: str, ttl: float) -> None:
        async with self._call("heartbeat"):
            await self._heartbeat(keys=[keys.members(role)], args=[member, _ms(ttl)])

    async def put_status(self, role: str, member: str, status: Body, ttl: float) -> None:
        async with self._call("status"):
            await self.client.set(keys.status(role, member), json.dumps(status), px=_ms(ttl))

    async def statuses(self, role: str, members: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not members:
            return {}
        async with self._call("statuses"):
            found = await self.client.mget([keys.status(role, m) for m in members])
        return {m: json.loads(v) for m, v in zip(members, found, strict=True) if v is not None}

    async def leave(self, role: str, member: str) -> None:
        async with self._call("leave"):
            await self.client.zrem(keys.members(role), member)

    async def members(self, role: str) -> list[str]:
        async with self._call("members"):
            live = await self._members(keys=[keys.members(role)])
        return sorted(_text(m) for m in live)

    # -- leases ----------------------------------------------------------------------------
    async def acquire(self, name: str, holder: str, ttl: float) -> int | None:
        async with self._call("acquire a lease"):
            token = await self._acquire(keys=[keys.lease(name), keys.fence(name)],
                                        args=[holder, _ms(ttl)])
        return None if token is None else int(token)

    async def renew(self, name: str, holder: str, token: int, ttl: float) -> bool:
        async with self._call("renew a lease"):
            done = await self._renew(keys=[keys.lease(name)],
                                     args=[f"{holder} {token}", _ms(ttl)])
        return bool(done)

    async def release(self, name: str, holder: str, token: int) -> bool:
        async with self._call("release a lease"):
            done = await self._release(keys=[keys.lease(name)], args=[f"{holder} {token}"])
        return bool(done)

    async def lease(self, name: str) -> tuple[str, int] | None:
        async with self._call("read a lease"):
            held = await self.client.get(keys.lease(name))
        if held is None:
            return None
        holder, _, token = _text(held).rpartition(" ")  # a holder may contain spaces
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
                    pipe.xadd(stream, _encode(body), maxlen=maxlen, approximate=True)
            await pipe.execute()

    async def _create_groups(self, group: str, streams: Iterable[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xgroup_create(stream, group, id="0", mkstream=True)
        for outcome in await pipe.execute(raise_on_error=False):
            if isinstance(outcome, Exception) and "BUSYGROUP" not in str(outcome):
                raise outcome  # BUSYGROUP: another process made it first, as wanted

    async def read(self, group: str, consumer: str, streams: Sequence[str], *, count: int,
                   block: float) -> list[Message]:
        if not streams:
            return []
        wanted: dict[KeyT, StreamIdT] = dict.fromkeys(streams, ">")
        async with self._call("read"):
            try:
                found = await self.client.xreadgroup(group, consumer, wanted, count=count,
                                                     block=_block(block))
            except ResponseError as exc:
                if "UNBLOCKED" in str(exc):  # the stream went while we waited: read again
                    return []
                if "NOGROUP" not in str(exc):
                    raise
                # Never made, or lost with Redis's data (a restart without persistence): make
                # it at the stream's start and read again (NOGROUP comes before any waiting).
                await self._create_groups(group, streams)
                found = await self.client.xreadgroup(group, consumer, wanted, count=count,
                                                     block=_block(block))
        return _messages(found)

    async def takeover(self, group: str, consumer: str, stream: str, *,
                       skip: Collection[str] = ()) -> list[Message]:
        out: list[Message] = []
        start = "-"
        async with self._call("takeover"):
            while True:
                try:
                    page = await self.client.xpending_range(stream, group, min=start, max="+",
                                                            count=PAGE)
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self._create_groups(group, [stream])
                    return []  # a group that was not there had nothing pending
                if not page:
                    break
                ids = [i for i in (_text(p["message_id"]) for p in page) if i not in skip]
                if ids:
                    out += await self._claim(group, consumer, stream, ids, len(skip))
                if len(page) < PAGE:
                    break
                start = "(" + _text(page[-1]["message_id"])
        return out

    async def _claim(self, group: str, consumer: str, stream: str,
                     ids: list[str], among: int = 0) -> list[Message]:
        """Claim `ids` (pending, in id order) for `consumer`; acknowledge the trimmed ones.
        `among`: how many other entries pending for `consumer` may lie between them."""
        # The counts are read in the same transaction as the claim: they are the ones after it.
        pipe = self.client.pipeline(transaction=True)
        pipe.xclaim(stream, group, consumer, 0, list[StreamIdT](ids))
        pipe.xpending_range(stream, group, min=ids[0], max=ids[-1], count=len(ids) + among,
                            consumername=consumer)
        claimed, after = await pipe.execute()
        deliveries = {_text(p["message_id"]): int(p["times_delivered"]) for p in after}
        out = [Message(stream, _text(entry_id), _decode(fields), deliveries[_text(entry_id)])
               for entry_id, fields in claimed if entry_id is not None and fields]
        # Redis 7 drops trimmed entries from the pending list on XCLAIM; older ones keep them.
        kept = {m.id for m in out}
        gone = [i for i in ids if i not in kept]
        if gone:
            await self.client.xack(stream, group, *gone)
        return out

    async def ack(self, group: str, stream: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        async with self._call("ack"):
            await self.client.xack(stream, group, *ids)

    async def ack_all(self, group: str, entries: Mapping[str, Sequence[str]]) -> None:
        if not any(entries.values()):
            return
        async with self._call("ack"):
            pipe = self.client.pipeline(transaction=False)
            for stream, ids in entries.items():
                if ids:
                    pipe.xack(stream, group, *ids)
            await pipe.execute()

    async def trim_done(self, group: str, stream: str) -> None:
        async with self._call("trim"):
            pipe = self.client.pipeline(transaction=False)
            pipe.xinfo_groups(stream)
            pipe.xpending(stream, group)
            try:
                groups, pending = await pipe.execute()
            except ResponseError:
                return  # no stream or no group yet: nothing to trim
            info = next((g for g in groups if _text(g["name"]) == group), None)
            if info is None:
                return
            bound = (_text(pending["min"]) if pending and pending.get("pending")
                     else _text(info["last-delivered-id"]))
            if bound != "0-0":
                await self.client.xtrim(stream, minid=bound, approximate=False)

    async def backlog(self, group: str, stream: str) -> int:
        async with self._call("backlog"):
            pipe = self.client.pipeline(transaction=True)
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
            try:
                length, groups = await pipe.execute()
            except ResponseError as exc:
                if "no such key" not in str(exc):
                    raise
                return 0
            info = next((g for g in groups if _text(g["name"]) == group), None)
            if info is None:  # a group made now would start at the stream's start
                return int(length)
            lag = info.get("lag")
            if lag is None:  # Redis cannot tell (entries deleted past the group): count them
                lag = await self._count_after(keys=[stream],
                                              args=[_text(info["last-delivered-id"])])
        # Redis's lag also counts entries trimmed before the group was handed them.
        return min(int(lag), int(length)) + int(info["pending"])

    async def length(self, stream: str) -> int:
        async with self._call("length"):
            return int(await self.client.xlen(stream))

    async def entries(self, stream: str, *, after: str = "0", count: int = 100) -> list[Message]:
        async with self._call("entries"):
            found = await self.client.xrange(stream, "(" + after, "+", count=count)
        return [Message(stream, _text(i), _decode(f))
                for i, f in found or [] if i is not None and f]

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
                pipe.xadd(keys.state_changes(partition), _encode({"device": device,
                                                                  "entry": entry}),
                          maxlen=CHANGES_MAXLEN, approximate=True)
            await pipe.execute()

    async def replace_state(self, partition: int, entries: Mapping[str, Body]) -> None:
        async with self._call("replace state"):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(keys.state(partition))
            if entries:
                pipe.hset(keys.state(partition),
                          mapping={d: json.dumps(e) for d, e in entries.items()})
            pipe.xadd(keys.state_changes(partition), _encode({"snapshot": True}),
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
            wanted: dict[KeyT, StreamIdT] = {s: p for s, p in positions.items()}
            found = await self.client.xread(wanted, count=count, block=_block(block))
        return _messages(found)

    async def close(self) -> None:
        await self.client.aclose()


def _encode(body: Body) -> dict[FieldT, EncodableT]:
    return {FIELD: json.dumps(body, separators=(",", ":"))}


def _decode(fields: Mapping[Any, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(fields[FIELD.encode()])
    return body


def _messages(found: Any) -> list[Message]:
    """Messages from an XREAD or XREADGROUP reply (a list of [stream, entries])."""
    return [Message(_text(stream), _text(entry_id), _decode(fields))
            for stream, entries in (found or []) for entry_id, fields in entries
            if entry_id is not None and fields]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _block(seconds: float) -> int | None:
    """XREAD's BLOCK in ms: None (no BLOCK, do not wait) for 0, as BLOCK 0 waits forever."""
    return None if seconds <= 0 else _ms(min(seconds, MAX_BLOCK))


def _without_secrets(url: str) -> str:
    """The URL for messages: no user, password or query (which may carry a password)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    return [s for s in found if s]
