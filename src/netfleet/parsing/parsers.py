"""`Parsers`: the `Parser` port over TextFSM (ntc-templates), TTP and regex, with cached templates.

Big outputs parse on a bounded thread pool (`parse_async`) so a 10 MB `show` output never stalls
the event loop; small ones parse inline, where a thread hop would cost more than the parse.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from netfleet.domain.errors import InvalidInput
from netfleet.parsing.fsm import TextFSMParser
from netfleet.parsing.ttp_engine import TTPParser

Records = list[dict[str, Any]]

KINDS = ("textfsm", "ttp", "regex")
BIG_OUTPUT = 64 * 1024  # characters; above this parse_async leaves the event loop


class Parsers:
    """Implements `netfleet.domain.ports.Parser`.

    kind "textfsm": the ntc-templates template for `platform` + `command` (chosen through
    ntc-templates' index), or `template` as TextFSM text. kind "ttp": `template` as TTP text.
    kind "regex": `template` a pattern with named groups, compiled with re.MULTILINE; every match
    is a record (a group that did not take part is "").

    Records are dicts with lower-case keys. Raises ParseError when there is no template for the
    platform + command or the output does not fit the template; InvalidInput when the request is
    wrong (unknown kind, missing or invalid template).

    Caches, all bounded LRUs: compiled TextFSM templates per template file and per template text,
    the index lookup per (platform, command), parsed TTP templates and compiled regexes per text.
    `compiles` counts the compilations per kind.
    """

    def __init__(self, *, template_dir: str | Path | None = None, cache_size: int = 512,
                 workers: int = 4, big_output: int = BIG_OUTPUT) -> None:
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.textfsm = TextFSMParser(template_dir, cache_size=cache_size,
                                     on_compile=functools.partial(self._count, "textfsm"))
        self.ttp = TTPParser(cache_size=max(1, cache_size // 4),
                             on_compile=functools.partial(self._count, "ttp"))
        self._regex = functools.lru_cache(maxsize=cache_size)(self._compile_regex)
        self.big_output = big_output
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # -- the port ------------------------------------------------------------------------------

    def parse(self, output: str, *, platform: str, command: str, kind: str = "textfsm",
              template: str | None = None) -> Records:
        if kind == "textfsm":
            return self.textfsm.parse(output, platform=platform, command=command,
                                      template=template)
        if kind == "ttp":
            return self.ttp.parse(output, _required(template, kind))
        if kind == "regex":
            pattern = self._regex(_required(template, kind))
            return [{k.lower(): v or "" for k, v in m.groupdict().items()}
                    for m in pattern.finditer(output)]
        raise InvalidInput(f"unknown parser kind {kind!r}", field="kind",
                           fix=f"use one of {', '.join(KINDS)}")

    async def parse_async(self, output: str, *, platform: str, command: str,
                          kind: str = "textfsm", template: str | None = None) -> Records:
        """`parse`, off the event loop when the output is big.

        TTP always goes to the pool: its parses are serialised by a lock, and the event loop must
        never wait on a lock a worker thread holds. So does the first ntc-templates lookup, which
        reads the index (about 0.2 s) unless `warm_up` ran.
        """
        call = functools.partial(self.parse, output, platform=platform, command=command,
                                 kind=kind, template=template)
        first_lookup = kind == "textfsm" and template is None and not self.textfsm.index_loaded
        if len(output) <= self.big_output and kind != "ttp" and not first_lookup:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._executor(), call)

    def warm_up(self) -> None:
        """Read ntc-templates' index now (blocking, about 0.2 s) instead of at the first parse."""
        self.textfsm.templates_for("", "")

    def has_template(self, platform: str, command: str) -> bool:
        """Whether ntc-templates has a TextFSM template for this platform + command."""
        return bool(self.textfsm.templates_for(platform, command))

    def template_names(self, platform: str, command: str) -> tuple[str, ...]:
        """The ntc-templates file(s) that parse this platform + command; () if none."""
        return self.textfsm.templates_for(platform, command)

    # -- caches and resources ------------------------------------------------------------------

    @property
    def compiles(self) -> dict[str, int]:
        """How many templates/patterns were compiled, per kind (cache misses)."""
        with self._counts_lock:
            return {kind: self._counts[kind] for kind in KINDS}

    def cache_clear(self) -> None:
        self.textfsm.cache_clear()
        self.ttp.cache_clear()
        self._regex.cache_clear()

    def close(self) -> None:
        """Stop the worker threads (waiting for running parses)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers,
                                                thread_name_prefix="netfleet-parse")
            return self._pool

    def _count(self, kind: str) -> None:
        with self._counts_lock:
            self._counts[kind] += 1

    def _compile_regex(self, pattern: str) -> re.Pattern[str]:
        self._count("regex")
        try:
            compiled = re.compile(pattern, re.MULTILINE)
        except re.error as exc:
            raise InvalidInput(f"regex is invalid: {exc}", field="template",
                               fix="pass a Python regular expression") from exc
        if not compiled.groupindex:
            raise InvalidInput("regex has no named groups, so its matches have no fields",
                               field="template", fix="name the groups: (?P<name>...)")
        return compiled


def _required(template: str | None, kind: str) -> str:
    if not template:
        raise InvalidInput(f"parser kind {kind!r} needs a template", field="template",
                           fix=f"pass the {kind} template text")
    return template
