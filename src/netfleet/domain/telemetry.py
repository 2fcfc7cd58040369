"""Telemetry profiles (which commands to poll and which parsed fields become which metrics) and
the samples that polling produces.

A profile is data: the built-in ones are YAML files, users add their own through the API. Every
cross-field rule is checked here, when the profile is loaded, so a poll never finds out at run
time that a profile makes no sense.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netfleet.domain.jobs import ParseSpec

__all__ = ["CommandSpec", "DerivedSpec", "MetricKind", "MetricSpec", "Profile", "Sample"]

METRIC_NAME = r"^[a-z][a-z0-9_]{0,63}$"
PROFILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_METRIC_NAME = re.compile(METRIC_NAME)

# Frozen: the poller compiles a profile once and shares the result between devices, so a profile
# must not change under it; change one with `model_copy(update=...)`, which makes a new object.
_MODEL = ConfigDict(extra="forbid", frozen=True)


class MetricKind(StrEnum):
    GAUGE = "gauge"  # the value as read
    COUNTER = "counter"  # a total that only grows; the sample is its per-second rate


class MetricSpec(BaseModel):
    """One metric read from one field of every parsed row of a command's output."""

    model_config = _MODEL

    name: str = Field(pattern=METRIC_NAME, description="metric name, e.g. if_in_bps")
    field: str = Field(min_length=1, max_length=200,
                       description="key in a parsed row (matched case-insensitively)")
    unit: str = Field(default="", max_length=32)
    kind: MetricKind = MetricKind.GAUGE
    scale: float = Field(default=1.0, allow_inf_nan=False,
                         description="multiply by this, e.g. 8 for byte counters -> bits")
    offset: float = Field(default=0.0, allow_inf_nan=False,
                          description="gauges only: add this after scaling, e.g. busy % as "
                                      "idle % with scale -1 and offset 100")
    labels: dict[str, str] = Field(default_factory=dict, max_length=16,
                                   description="label name -> parsed field, e.g. "
                                               "{interface: interface}")
    map: dict[str, float] | None = Field(default=None,
                                         description="gauges only: text -> number, e.g. "
                                                     "{up: 1, down: 0} (case-insensitive)")

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for name, field in labels.items():
            if not _METRIC_NAME.match(name):
                raise ValueError(f"label name {name!r} must match {METRIC_NAME}")
            if not field:
                raise ValueError(f"label {name!r} names no field; give the parsed field to read")
        return labels

    @field_validator("map")
    @classmethod
    def _finite_map(cls, mapping: dict[str, float] | None) -> dict[str, float] | None:
        if mapping is not None and not mapping:
            raise ValueError("map is empty; leave it out or give text -> number pairs")
        return mapping

    @model_validator(mode="after")
    def _counter_rules(self) -> MetricSpec:
        if self.kind is MetricKind.COUNTER:
            if self.map is not None:
                raise ValueError(f"metric {self.name!r}: map applies to gauges only; a counter "
                                 f"is a number that grows (drop `map` or use kind gauge)")
            if self.offset:
                raise ValueError(f"metric {self.name!r}: offset applies to gauges only; a "
                                 f"counter's rate does not depend on it (drop `offset`)")
        return self


class DerivedSpec(BaseModel):
    """A device-level metric computed from this round's samples of other metrics.

    sum: the total of `of` over every label set. ratio: sum(`of`) / sum(`over`), times `scale`
    (100 for a percentage); skipped when the denominator is 0.
    """

    model_config = _MODEL

    name: str = Field(pattern=METRIC_NAME)
    unit: str = Field(default="", max_length=32)
    op: Literal["sum", "ratio"]
    of: list[str] = Field(min_length=1, max_length=64,
                          description="metrics summed (the numerator of a ratio)")
    over: list[str] = Field(default_factory=list, max_length=64,
                            description="ratio only: metrics summed as the denominator")
    scale: float = Field(default=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _operands(self) -> DerivedSpec:
        if self.op == "ratio" and not self.over:
            raise ValueError(f"derived metric {self.name!r}: a ratio needs `over`, the metrics "
                             f"summed as its denominator")
        if self.op == "sum" and self.over:
            raise ValueError(f"derived metric {self.name!r}: `over` applies to ratio only; "
                             f"put every summed metric in `of`")
        return self


class CommandSpec(BaseModel):
    """One command polled each round, how to parse its output, and the metrics it yields."""

    model_config = _MODEL

    command: str = Field(min_length=1, max_length=500)
    parse: ParseSpec = Field(default_factory=ParseSpec)
    metrics: list[MetricSpec] = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _parsable(self) -> CommandSpec:
        kind, template = self.parse.kind, self.parse.template
        if kind == "none":
            raise ValueError(f"command {self.command!r}: parse kind 'none' yields no rows, so "
                             f"its metrics could never be read; use textfsm, ttp or regex")
        if kind in ("ttp", "regex") and not template:
            raise ValueError(f"command {self.command!r}: parse kind {kind!r} needs "
                             f"`parse.template`")
        if kind == "regex" and template:
            _check_regex(self.command, template, self.metrics)
        return self


def _check_regex(command: str, template: str, metrics: list[MetricSpec]) -> None:
    """Every field a metric reads must be a named group: a typo would otherwise only show as a
    metric that never appears."""
    try:
        groups = {g.lower() for g in re.compile(template, re.MULTILINE).groupindex}
    except re.error as exc:
        raise ValueError(f"command {command!r}: parse.template is not a valid regular "
                         f"expression: {exc}") from None
    for metric in metrics:
        for field in (metric.field, *metric.labels.values()):
            if field.lower() not in groups:
                raise ValueError(
                    f"command {command!r}: metric {metric.name!r} reads field {field!r}, which "
                    f"parse.template does not capture; name a group (?P<{field.lower()}>...) "
                    f"or read one of {sorted(groups)}")


class Profile(BaseModel):
    """What to poll on one platform, how often, and which metrics come out."""

    model_config = _MODEL

    name: str = Field(pattern=PROFILE_NAME)
    description: str = Field(default="", max_length=2000)
    platform: str = Field(min_length=1, max_length=64)
    interval: float = Field(default=60.0, ge=1, le=86400, description="seconds between polls")
    commands: list[CommandSpec] = Field(min_length=1, max_length=64)
    derived: list[DerivedSpec] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _names(self) -> Profile:
        defined: set[str] = set()
        for i, command in enumerate(self.commands):
            for j, metric in enumerate(command.metrics):
                if metric.name in defined:
                    raise ValueError(
                        f"commands[{i}].metrics[{j}]: metric name {metric.name!r} is already "
                        f"defined in this profile; every metric needs its own name")
                defined.add(metric.name)
        for k, derived in enumerate(self.derived):
            if derived.name in defined:
                raise ValueError(f"derived[{k}]: metric name {derived.name!r} is already "
                                 f"defined in this profile; give the derived metric its own name")
            for part in ("of", "over"):
                unknown = [m for m in getattr(derived, part) if m not in defined]
                if unknown:
                    raise ValueError(
                        f"derived[{k}].{part}: {derived.name!r} uses {unknown}, which this "
                        f"profile does not define (before it); define them under "
                        f"commands[].metrics or earlier in derived, or fix the names")
            defined.add(derived.name)
        return self

    @property
    def metric_names(self) -> list[str]:
        """Every metric this profile can produce, in order (command metrics, then derived)."""
        return ([m.name for c in self.commands for m in c.metrics]
                + [d.name for d in self.derived])


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series at one instant."""

    device: str
    metric: str
    value: float
    ts: float  # epoch seconds
    labels: tuple[tuple[str, str], ...] = ()  # sorted by label name; () = device-level
    unit: str = ""
