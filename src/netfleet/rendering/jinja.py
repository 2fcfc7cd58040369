"""Rendering configuration templates: Jinja2, sandboxed, StrictUndefined, compiled once.

A template comes from an API caller, so it runs in Jinja's sandbox (no `__class__` walks to
Python internals), and a variable it needs but was not given is an error naming the variable,
never a silently empty line pushed to a device.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from functools import cache, lru_cache
from types import TracebackType
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from netfleet.domain.errors import RenderError

_UNDEFINED = re.compile(r"^'(?P<name>[^']+)' is undefined$")


class Renderer:
    """Renders Jinja2 template text with variables; compiled templates cached (bounded LRU).

    The environment is Ansible's choice for config: `trim_blocks` (a `{% ... %}` line leaves no
    empty line behind), no autoescaping (configs are not HTML), the trailing newline kept.
    """

    def __init__(self, *, cache_size: int = 256) -> None:
        self.env = SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True,
                                        keep_trailing_newline=True, autoescape=False)
        # Keyed by the text itself: a hash picks the bucket, equality confirms, so two
        # templates can never be confused.
        self._compiled = lru_cache(maxsize=cache_size)(self._compile)
        self._compiles = 0
        self._lock = threading.Lock()

    @property
    def compiles(self) -> int:
        """How many templates were compiled (cache misses)."""
        return self._compiles

    def cache_clear(self) -> None:
        self._compiled.cache_clear()

    def _compile(self, text: str) -> Template:
        with self._lock:
            self._compiles += 1
        try:
            return self.env.from_string(text)
        except TemplateSyntaxError as exc:
            raise RenderError(f"template syntax error at line {exc.lineno}: {exc.message}") from exc
        except TemplateError as exc:  # e.g. an unknown filter, found while compiling
            line = getattr(exc, "lineno", None)
            where = f" at line {line}" if line else ""
            raise RenderError(f"template error{where}: {exc.message}") from exc

    def render(self, template_text: str, variables: Mapping[str, Any] | None = None) -> str:
        """Render; raises RenderError naming the missing variable, the bad line or the refusal."""
        template = self._compiled(template_text)
        try:
            return template.render(dict(variables or {}))
        except SecurityError as exc:
            raise RenderError(f"template refused by the sandbox{_at(exc)}: {exc}") from exc
        except UndefinedError as exc:
            raise RenderError(_undefined_message(exc)) from exc
        except TemplateError as exc:
            raise RenderError(f"template error{_at(exc)}: {exc}") from exc
        except Exception as exc:  # the template's own expression failed, e.g. {{ 1 / 0 }}
            raise RenderError(f"template failed{_at(exc)}: {type(exc).__name__}: {exc}") from exc


def _undefined_message(exc: UndefinedError) -> str:
    match = _UNDEFINED.match(str(exc))
    if match:
        return (f"template variable {match['name']!r} is undefined{_at(exc)}; "
                f"pass it in vars")
    return f"template{_at(exc)}: {exc}; pass it in vars"


def _at(exc: BaseException) -> str:
    line = _template_line(exc.__traceback__)
    return f" (line {line})" if line else ""


def _template_line(tb: TracebackType | None) -> int | None:
    # Jinja rewrites tracebacks so the template's frames carry its own line numbers.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def config_lines(text: str) -> list[str]:
    """A rendered config as the lines to send: blank lines and `!` comment lines dropped,
    trailing spaces trimmed, leading indentation kept (it marks IOS/EOS sub-mode lines, and
    `netfleet.rendering.diff` relies on it)."""
    lines = (line.rstrip() for line in text.splitlines())
    return [line for line in lines if line.strip() and not line.lstrip().startswith("!")]


@cache
def default_renderer() -> Renderer:
    """The process-wide `Renderer` (and its cache) behind `render`."""
    return Renderer()


def render(template_text: str, variables: Mapping[str, Any] | None = None) -> str:
    """Render with `default_renderer()`; see `Renderer.render`."""
    return default_renderer().render(template_text, variables)
