"""TTP parsing with a caller's template; the parsed template (a `ttp` object) is cached.

ttp keeps its working state in the `ttp` object and, worse, in module globals of its plugin
modules (`_ttp_`, rebound by whichever `ttp` object loaded a plugin last), so two cached templates
used one after the other read each other's variables. Every parse therefore holds one lock and
first points those globals back at the `ttp` object it is about to use.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from xml.etree.ElementTree import ParseError as XMLParseError

from ttp import ttp

from netfleet.domain.errors import InvalidInput, ParseError

Records = list[dict[str, Any]]


def _records(result: Any) -> Records:
    """ttp's result for one template and one input → records.

    A template with named groups yields one dict keyed by group name (kept as one record); one
    without yields a list of match dicts. Only top-level keys are lower-cased: nested structure is
    the template author's.
    """
    items = result if isinstance(result, list) else [result]
    return [{str(k).lower(): v for k, v in item.items()}
            for item in items if isinstance(item, dict) and item]


class TTPParser:
    """Runs caller-supplied TTP templates; parsed templates are cached (bounded LRU)."""

    def __init__(self, *, cache_size: int = 128,
                 on_compile: Callable[[], None] | None = None) -> None:
        self._on_compile = on_compile or (lambda: None)
        self._compiled = lru_cache(maxsize=cache_size)(self._compile)
        self.lock = threading.Lock()

    def _compile(self, template: str) -> Any:
        self._on_compile()
        try:
            return ttp(template=template)
        except XMLParseError as exc:
            raise InvalidInput(f"TTP template is invalid: {exc}", field="template",
                               fix="TTP templates are XML-like: close every <group>") from exc

    def cache_clear(self) -> None:
        self._compiled.cache_clear()

    def parse(self, output: str, template: str) -> Records:
        with self.lock:
            parser = self._compiled(template)
            _rebind_plugin_globals(parser)
            parser.clear_input()
            parser.clear_result()
            try:
                parser.add_input(output)
                parser.parse(one=True)  # never fork worker processes
                result = parser.result()
            except Exception as exc:
                raise ParseError(f"output does not fit the TTP template: {exc}") from exc
            finally:
                parser.clear_input()  # do not keep a large output alive in the cache
        # [per template][per input]: we add one template and one input.
        return _records(result[0][0]) if result and result[0] else []


def _rebind_plugin_globals(parser: Any) -> None:
    state = parser._ttp_
    for name, module in list(sys.modules.items()):
        if name.startswith("ttp.") and hasattr(module, "_ttp_"):
            setattr(module, "_ttp_", state)  # noqa: B010 (mypy: ModuleType has no _ttp_)
