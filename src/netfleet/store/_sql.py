"""SQL helpers shared by the repositories: selectors as WHERE clauses, and batching."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, true, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from netfleet.domain.selectors import Selector, is_glob
from netfleet.store.models import DeviceRow

T = TypeVar("T")

# Well under SQLite's 32,766 and asyncpg's 32,767 bound parameters per statement.
CHUNK = 1000


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def like_pattern(glob: str) -> str:
    """`ios-0*` -> `ios-0%` for LIKE … ESCAPE '\\': the glob's wildcards; all else literal."""
    out = []
    for c in glob:
        if c in "\\%_":
            out.append("\\" + c)
        else:
            out.append({"*": "%", "?": "_"}.get(c, c))
    return "".join(out)


def sqlite_glob_pattern(glob: str) -> str:
    """SQLite's GLOB is case-sensitive like our globs (its LIKE is not); only `[` needs quoting
    because names cannot contain `*` or `?`."""
    return glob.replace("[", "[[]")


def _name_clause(pattern: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        return DeviceRow.name.op("GLOB", is_comparison=True)(sqlite_glob_pattern(pattern))
    return DeviceRow.name.like(like_pattern(pattern), escape="\\")


def _tags_clause(tags: Sequence[str], dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return type_coerce(DeviceRow.tags, JSONB).contains(list(tags))
    clauses = []
    for tag in tags:
        each = func.json_each(DeviceRow.tags).table_valued("value")
        clauses.append(exists(select(1).select_from(each).where(each.c.value == tag)))
    return and_(*clauses)


def selector_filter(selector: Selector, dialect: str) -> ColumnElement[bool]:
    """The selector as one WHERE clause over DeviceRow, matching what Selector.matches says."""
    clauses: list[ColumnElement[bool]] = []
    if selector.names:
        exact = [n for n in selector.names if not is_glob(n)]
        names = [_name_clause(p, dialect) for p in selector.names if is_glob(p)]
        if exact:
            names.append(DeviceRow.name.in_(exact))
        clauses.append(or_(*names))
    if selector.platform is not None:
        clauses.append(DeviceRow.platform == selector.platform)
    if selector.site is not None:
        clauses.append(DeviceRow.site == selector.site)
    if selector.tags:
        clauses.append(_tags_clause(selector.tags, dialect))
    return and_(true(), *clauses)
