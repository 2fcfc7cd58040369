"""Jobs as the engine, the API and the SDK see them: what to do on a device, and what happened."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobKind(enum.StrEnum):
    COMMAND = "command"  # read: one or more operational commands
    CONFIG = "config"  # change: config lines (rendered), optionally saved
    FACTS = "facts"  # refresh discovered facts


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def final(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


class ParseSpec(BaseModel):
    """How to parse command output: ntc-templates by default, or TTP / regex / own TextFSM."""

    kind: str = Field(default="textfsm", pattern="^(textfsm|ttp|regex|none)$")
    template: str | None = Field(default=None, max_length=100_000)


class DeviceTask(BaseModel):
    """One device's share of a job, as the engine runs it."""

    job_id: str
    device: str
    kind: JobKind
    commands: list[str] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list)
    dry_run: bool = False
    save: bool = False
    ordered: bool = False  # a read that waits behind queued changes
    parse: ParseSpec | None = None
    timeout: float = Field(default=60.0, gt=0, le=3600)
    attempt: int = Field(default=1, ge=1)  # 2+: handed over from an agent that stopped with it

    @property
    def is_change(self) -> bool:
        return self.kind is JobKind.CONFIG and not self.dry_run


class CommandOutput(BaseModel):
    command: str
    output: str
    parsed: list[dict[str, Any]] | None = None
    parse_error: str | None = None


class DeviceResult(BaseModel):
    job_id: str
    device: str
    status: Status = Status.QUEUED
    category: str | None = None  # connect, auth, timeout, rejected, session_lost, parse, …
    message: str | None = None
    outputs: list[CommandOutput] = Field(default_factory=list)
    diff: str | None = None  # config dry_run
    facts: dict[str, Any] | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    session_reused: bool = False
    attempt: int = 0


class JobRequest(BaseModel):
    """What a client asks for: one device (`device`) or a selector (`where`), and the work."""

    model_config = ConfigDict(extra="forbid")

    kind: JobKind
    device: str | None = Field(default=None, description="one device by name")
    where: list[str] = Field(default_factory=list, max_length=20,
                             description="selector terms, AND-ed: name=ios-*, tag=core, "
                                         "platform=cisco_ios, site=lab1")
    commands: list[str] = Field(default_factory=list, max_length=100)
    lines: list[str] = Field(default_factory=list, max_length=10_000)
    template: str | None = Field(default=None, max_length=200_000,
                                 description="Jinja2 config template, rendered per device")
    vars: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool = False
    save: bool = False
    ordered: bool = False
    parse: ParseSpec | None = None
    timeout: float = Field(default=60.0, gt=0, le=3600)
    webhook: str | None = Field(default=None, max_length=2000, pattern="^https?://")


class JobView(BaseModel):
    """A job as the API returns it: the request, overall status, and per-device results."""

    id: str
    kind: JobKind
    status: Status
    created_at: datetime
    finished_at: datetime | None = None
    devices: int
    counts: dict[str, int] = Field(default_factory=dict)
    request: dict[str, Any] = Field(default_factory=dict)
    results: list[DeviceResult] = Field(default_factory=list)
