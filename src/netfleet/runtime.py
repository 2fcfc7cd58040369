"""Running netfleet's coroutines: on uvloop when it is installed, else on asyncio's own loop.

uvloop moves the event loop's hot path (socket reads and writes, timers, callbacks) into C:
on `netfleet bench poll` that is about a sixth less CPU per device poll, and the same for the
simulator serving them. Set NETFLEET_EVENT_LOOP=asyncio to run on the standard loop (to rule
the loop out while debugging, or on a platform uvloop does not support).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["EVENT_LOOPS", "loop_factory", "loop_name", "run"]

T = TypeVar("T")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def loop_name() -> str:
    """The loop `run` uses: "uvloop" or "asyncio", from NETFLEET_EVENT_LOOP (default auto)."""
    wanted = os.environ.get("NETFLEET_EVENT_LOOP", "auto").strip().lower() or "auto"
    if wanted not in EVENT_LOOPS:
        raise ValueError(f"NETFLEET_EVENT_LOOP={wanted!r} is not one of "
                         f"{', '.join(EVENT_LOOPS)}; unset it to pick uvloop when installed")
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise ValueError("NETFLEET_EVENT_LOOP=uvloop but uvloop is not installed; "
                             "`pip install uvloop` or unset the variable") from None
        return "asyncio"
    return "uvloop"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the loop NETFLEET_EVENT_LOOP selects."""
    try:
        factory = loop_factory()
    except ValueError:
        main.close()  # never awaited: say so quietly instead of a RuntimeWarning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
