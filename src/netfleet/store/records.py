"""What the repositories take and return: plain frozen dataclasses, never ORM rows.

Inputs (`DeviceSpec`, `CredentialSpec`) validate themselves and raise InvalidInput naming the
field and the fix, so the API, the CLI and the importer all apply the same rules.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Generic, Literal, TypeVar, get_args

from netfleet.domain.errors import InvalidInput
from netfleet.domain.selectors import Selector


class Unset(enum.Enum):
    """For updates: "leave this field as it is" (None means "clear it")."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
JobKind = Literal["command", "config", "facts"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)
ResultStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
RESULT_STATUSES: tuple[ResultStatus, ...] = get_args(ResultStatus)
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

# Device and profile names appear in URLs, selectors and CLI arguments: no spaces, slashes,
# commas, '=' or glob characters.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,254}$")
PLATFORM = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_-]{1,63})*\.?$")
_TAG = re.compile(r"^[^\s,;]{1,64}$")
DEFAULT_SSH_PORT = 22


def check_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise InvalidInput(f"{field} {value!r} is not a valid name", field=field,
                           fix="use letters, digits and . _ : @ + - (no spaces or slashes), "
                               "starting with a letter or digit, at most 255 characters")
    return value


def _check_host(value: object) -> str:
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            if _HOSTNAME.match(value):
                return value
    raise InvalidInput(f"host {value!r} is not an IP address or DNS name", field="host",
                       fix="give an address like 192.0.2.10 or a name like sw1.example.net")


def _check_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"port {value!r} is not a TCP port", field="port",
                           fix="use a number from 1 to 65535 (SSH is 22)")
    return value


def _check_platform(value: object, field: str = "platform") -> str:
    if not isinstance(value, str) or not PLATFORM.match(value):
        raise InvalidInput(f"{field} {value!r} is not a platform name", field=field,
                           fix="use a Netmiko-style name such as cisco_ios, arista_eos or "
                               "juniper_junos")
    return value


def _check_site(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 255 or any(
            c.isspace() for c in value):
        raise InvalidInput(f"site {value!r} is not a site name", field="site",
                           fix="use a short name without spaces, e.g. lab1, or leave it empty")
    return value


def _check_tags(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInput(f"tags {value!r} is not a list", field="tags",
                           fix="give a list of tags, e.g. [core, lab]")
    for tag in value:
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise InvalidInput(f"tag {tag!r} is not valid", field="tags",
                               fix="tags are 1-64 characters without spaces, commas or ';'")
    return tuple(dict.fromkeys(value))  # order kept, duplicates dropped


def _check_vars(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInput(f"vars {value!r} is not a mapping", field="vars",
                           fix="give a mapping of names to values, e.g. {asn: 65001}")
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise InvalidInput("vars holds values that are not JSON (dates, sets, objects)",
                           field="vars", fix="use strings, numbers, booleans, lists and "
                                             "mappings") from None
    return dict(value)


def _check_secret(value: object, field: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidInput(f"{field} must be a non-empty string", field=field,
                           fix=f"give the {field} as text, or leave it out")
    return value


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device as a user describes it. `driver` None means the default for the platform;
    `credentials` names a credentials profile."""

    name: str
    host: str
    platform: str
    port: int = DEFAULT_SSH_PORT
    driver: str | None = None
    site: str | None = None
    tags: Sequence[str] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    credentials: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        _check_host(self.host)
        _check_port(self.port)
        _check_platform(self.platform)
        if self.driver is not None:
            _check_platform(self.driver, "driver")
        _check_site(self.site)
        object.__setattr__(self, "tags", _check_tags(self.tags))
        object.__setattr__(self, "vars", _check_vars(self.vars))
        if self.credentials is not None:
            check_name(self.credentials, "credentials")


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    """A partial update: fields left UNSET keep their value."""

    name: str | Unset = UNSET
    host: str | Unset = UNSET
    port: int | Unset = UNSET
    platform: str | Unset = UNSET
    driver: str | Unset | None = UNSET
    site: str | Unset | None = UNSET
    tags: Sequence[str] | Unset = UNSET
    vars: Mapping[str, Any] | Unset = UNSET
    credentials: str | Unset | None = UNSET

    def apply(self, spec: DeviceSpec) -> DeviceSpec:
        """The spec with this update applied, validated as a whole."""
        values = {f: getattr(spec, f) for f in DeviceSpec.__dataclass_fields__}
        values.update({f: v for f in values if (v := getattr(self, f)) is not UNSET})
        return DeviceSpec(**values)


@dataclass(frozen=True, slots=True)
class Facts:
    """What a device reports about itself. None: not reported (the stored value is kept)."""

    model: str | None = None
    serial: str | None = None
    os_version: str | None = None
    uptime_seconds: int | None = None
    hostname: str | None = None
    collected_at: datetime | None = None


# Facts whose changes are history. Uptime changes on every collection, so it is not history.
HISTORY_FIELDS = ("model", "serial", "os_version", "hostname")


@dataclass(frozen=True, slots=True)
class FactChange:
    device: str
    field: str
    old: str | None
    new: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    name: str
    host: str
    port: int
    platform: str
    driver: str | None
    site: str | None
    tags: tuple[str, ...]
    vars: Mapping[str, Any]
    credentials: str | None
    created_at: datetime
    updated_at: datetime
    facts: Facts | None = None

    def spec(self) -> DeviceSpec:
        return DeviceSpec(name=self.name, host=self.host, port=self.port,
                          platform=self.platform, driver=self.driver, site=self.site,
                          tags=self.tags, vars=self.vars, credentials=self.credentials)


@dataclass(frozen=True, slots=True)
class CredentialSpec:
    """A credentials profile with its secrets in plaintext, on the way in."""

    name: str
    username: str
    password: str | None = field(default=None, repr=False)
    enable_secret: str | None = field(default=None, repr=False)
    ssh_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        if not isinstance(self.username, str) or not self.username or any(
                c.isspace() for c in self.username):
            raise InvalidInput(f"username {self.username!r} is not valid", field="username",
                               fix="give the login name, without spaces")
        _check_secret(self.password, "password")
        _check_secret(self.enable_secret, "enable_secret")
        _check_secret(self.ssh_key, "ssh_key")


@dataclass(frozen=True, slots=True)
class CredentialUpdate:
    username: str | Unset = UNSET
    password: str | Unset | None = field(default=UNSET, repr=False)
    enable_secret: str | Unset | None = field(default=UNSET, repr=False)
    ssh_key: str | Unset | None = field(default=UNSET, repr=False)


@dataclass(frozen=True, slots=True)
class CredentialProfile:
    """A profile as anyone may see it: which secrets are set, never what they are."""

    id: int
    name: str
    username: str
    has_password: bool
    has_enable_secret: bool
    has_ssh_key: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """Decrypted secrets, for the engine only. repr() hides them."""

    username: str
    password: str | None = field(default=None, repr=False)
    enable_secret: str | None = field(default=None, repr=False)
    ssh_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    role: Role
    prefix: str  # the token's first characters: enough to tell keys apart in a listing
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key just created: `token` is shown once and stored only as a hash."""

    key: ApiKey
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class JobResult:
    """One device's part of a job. `job_id` is the per-device child job."""

    job_id: str
    parent_id: str | None
    device: str
    status: ResultStatus
    category: str | None
    message: str | None
    outputs: list[dict[str, Any]]
    diff: str | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    session_reused: bool
    attempt: int


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: JobKind
    spec: Mapping[str, Any]
    selector: Selector | None
    # A child's status is its device's result status. A parent is queued, then running, then
    # succeeded (every device did), cancelled (any was), or failed; never timed_out.
    status: ResultStatus
    parent_id: str | None
    device_id: int | None
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Over the job's devices: how many there are and how many ended each way.
    total: int
    succeeded: int
    failed: int
    cancelled: int

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: Job
    results: list[JobResult]


@dataclass(frozen=True, slots=True)
class ResultUpdate:
    """What the engine reports about one child job. Fields left None are kept."""

    job_id: str
    status: ResultStatus
    category: str | None = None
    message: str | None = None
    outputs: list[dict[str, Any]] | None = None
    diff: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    session_reused: bool | None = None
    attempt: int | None = None


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass `next_cursor` back as `after` for the next (None: last)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
