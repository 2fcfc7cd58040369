"""Importing an inventory: YAML (the simulator's fleet.yaml as it is written) or CSV.

An import is all or nothing: every row is checked first, every problem is reported at once
(row, field and fix), and the writes happen in one transaction. Devices already in the store
are updated with the fields the file gives; fields it leaves out keep their value.

YAML:  devices: [{name, host, port, platform, driver, site, tags, vars, credentials}]
       credentials: {<profile>: {username, password, enable_secret, ssh_key}}   (inline), and/or
       credentials_file: fleet.secrets.yaml   (same `credentials:` mapping; relative to the file)
CSV:   name,host,port,platform,site,tags,credentials   (tags separated by ';'; driver optional)

Uploads (the API) go through `load_upload`: the secrets file comes with the request and
`credentials_file` resolves to it, never to a file on the server.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from netfleet.domain.errors import InvalidInput
from netfleet.store import Store
from netfleet.store.records import (
    CredentialSpec,
    Device,
    DeviceSpec,
    DeviceUpdate,
    UpsertCounts,
)

DEVICE_FIELDS = tuple(f.name for f in fields(DeviceSpec))
REQUIRED = ("name", "host", "platform")
PROFILE_FIELDS = ("username", "password", "enable_secret", "ssh_key")
CSV_COLUMNS = ("name", "host", "port", "platform", "site", "tags", "credentials", "driver")
YAML_KEYS = ("devices", "credentials", "credentials_file")
MAX_REPORTED = 50  # problems listed in the message; all are on InventoryError.problems
BULK = 1000  # rows created by an import above which the planner's statistics are refreshed

# The C loader reads a 10,000-device fleet.yaml (80,000 lines) in 1.6 s instead of 5.9 s.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InventoryError(InvalidInput):
    """Everything wrong with an inventory file, so it can be fixed in one pass."""

    def __init__(self, source: str, problems: Sequence[InvalidInput]) -> None:
        shown = [f"  {p.field}: {p.message}" + (f" — {p.fix}" if p.fix else "")
                 for p in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"  … and {len(problems) - MAX_REPORTED} more")
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}; nothing was imported\n"
                         + "\n".join(shown), field=problems[0].field, fix=problems[0].fix)
        self.source = source
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Row:
    """One device from a file: its spec, and which fields the file actually gave."""

    spec: DeviceSpec
    given: frozenset[str]
    where: str  # "devices[3]" or "line 4", for errors found later (missing profiles)


@dataclass(frozen=True, slots=True)
class Inventory:
    source: str
    rows: list[Row] = field(default_factory=list)
    credentials: list[CredentialSpec] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ImportReport:
    devices: UpsertCounts
    credentials: UpsertCounts


# -- reading files -------------------------------------------------------------------------


def load(path: Path) -> Inventory:
    """Read and check an inventory file, YAML or CSV by its suffix. Raises InventoryError."""
    if path.suffix.lower() == ".csv":
        return parse_csv(_read(path), source=str(path))
    if path.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml(_read(path), source=str(path), base_dir=path.parent)
    raise InvalidInput(f"{path}: cannot tell the format from the suffix {path.suffix!r}",
                       field="path", fix="name the file .yaml, .yml or .csv")


def _read(path: Path, field: str = "path") -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets write a BOM
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist", field=field,
                           fix="check the path (relative paths start where the command runs, "
                               "or for credentials_file, beside the inventory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field=field,
                           fix="check the file's permissions and that it is UTF-8 text") from None


def load_upload(filename: str, data: bytes,
                secrets: tuple[str, bytes] | None = None) -> Inventory:
    """Check an inventory sent over HTTP: `secrets` is (file name, content) of the file its
    `credentials_file` names. Nothing is read from, or written to, the server's disk."""
    name = PurePosixPath(filename.replace("\\", "/")).name or "inventory"
    suffix = PurePosixPath(name).suffix.lower()
    text = _decode(data, "file")
    if suffix == ".csv":
        if secrets is not None:
            raise InvalidInput("a CSV inventory names no credentials_file", field="secrets",
                               fix="leave the secrets part out, or import a YAML inventory "
                                   "with credentials_file")
        return parse_csv(text, source=name)
    if suffix not in (".yaml", ".yml"):
        raise InvalidInput(f"{name}: cannot tell the format from the suffix {suffix!r}",
                           field="file", fix="name the file .yaml, .yml or .csv")
    uploaded = {} if secrets is None else {
        PurePosixPath(secrets[0].replace("\\", "/")).name: _decode(secrets[1], "secrets")}
    return parse_yaml(text, source=name, uploaded=uploaded)


def _decode(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"the {field} part is not UTF-8 text", field=field,
                           fix="save the file as UTF-8") from None


def parse_yaml(text: str, *, source: str = "<yaml>", base_dir: Path | None = None,
               uploaded: Mapping[str, str] | None = None) -> Inventory:
    """`uploaded`: the files sent with an upload, by name; `credentials_file` then resolves
    among them (by its last path component) instead of against `base_dir`."""
    data = _yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InventoryError(source, [InvalidInput("the file is not a mapping", field="(top)",
                                                   fix="start with `devices:`")])
    problems: list[InvalidInput] = []
    unknown = sorted(set(map(str, data)) - set(YAML_KEYS))
    if unknown:
        problems.append(InvalidInput(f"unknown keys {unknown}", field="(top)",
                                     fix=f"use {', '.join(YAML_KEYS)}"))
    profiles: dict[str, CredentialSpec] = {}
    inline = data.get("credentials")
    if inline is not None:
        _profiles(inline, "credentials", profiles, problems)
    if (secrets_file := data.get("credentials_file")) is not None:
        if uploaded is None:
            _secrets_file(secrets_file, base_dir or Path("."), profiles, problems)
        else:
            _uploaded_secrets(secrets_file, uploaded, profiles, problems)
    devices = data.get("devices")
    if devices is None:
        devices = []
    if not isinstance(devices, list):
        problems.append(InvalidInput("devices is not a list", field="devices",
                                     fix="write `devices:` followed by `- name: …` entries"))
        devices = []
    rows = [row for i, entry in enumerate(devices)
            if (row := _yaml_row(entry, f"devices[{i}]", problems)) is not None]
    return _checked(Inventory(source, rows, list(profiles.values())), problems)


def _yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        # Not str(exc): with the pure-Python loader it quotes the offending line, which in a
        # secrets file is a password.
        problem = getattr(exc, "problem", None) or type(exc).__name__
        context = getattr(exc, "context", None)
        context_mark = getattr(exc, "context_mark", None)
        if context and context_mark is not None:
            problem = f"{problem} ({context} at line {context_mark.line + 1})"
        raise InventoryError(source, [InvalidInput(f"not valid YAML: {problem}", field=where,
                                                   fix="fix the YAML syntax at that line")]
                             ) from None


def _secrets_file(value: object, base_dir: Path, profiles: dict[str, CredentialSpec],
                  problems: list[InvalidInput]) -> None:
    if not isinstance(value, str) or not value:
        problems.append(InvalidInput("credentials_file is not a file name",
                                     field="credentials_file", fix="give a path, e.g. "
                                                                   "fleet.secrets.yaml"))
        return
    path = base_dir / value
    try:
        text = _read(path, "credentials_file")
    except InvalidInput as exc:
        problems.append(exc)
        return
    _secrets_text(text, str(path), value, profiles, problems)


def _uploaded_secrets(value: object, uploaded: Mapping[str, str],
                      profiles: dict[str, CredentialSpec], problems: list[InvalidInput]) -> None:
    name = PurePosixPath(value.replace("\\", "/")).name if isinstance(value, str) else ""
    if not name:
        problems.append(InvalidInput("credentials_file is not a file name",
                                     field="credentials_file", fix="give a file name, e.g. "
                                                                   "fleet.secrets.yaml"))
        return
    if name not in uploaded:
        sent = f" (the secrets part sent is {', '.join(sorted(uploaded))})" if uploaded else ""
        problems.append(InvalidInput(f"credentials_file {name} was not uploaded{sent}",
                                     field="credentials_file",
                                     fix=f"send {name} as the `secrets` part (the SDK and "
                                         "`netfleet devices import` do when it is beside the "
                                         "inventory)"))
        return
    _secrets_text(uploaded[name], name, name, profiles, problems)


def _secrets_text(text: str, label: str, value: str, profiles: dict[str, CredentialSpec],
                  problems: list[InvalidInput]) -> None:
    try:
        data = _yaml(text, label)
    except InventoryError as exc:
        problems.extend(InvalidInput(f"{label}: {p.message}", field=p.field, fix=p.fix)
                        for p in exc.problems)
        return
    if not isinstance(data, Mapping) or set(data) != {"credentials"}:
        problems.append(InvalidInput(f"{label} does not hold only a `credentials:` mapping",
                                     field="credentials_file",
                                     fix="write credentials: {<profile>: {username, password}}"))
        return
    _profiles(data["credentials"], f"{value}:credentials", profiles, problems)


def _profiles(data: object, where: str, out: dict[str, CredentialSpec],
              problems: list[InvalidInput]) -> None:
    if not isinstance(data, Mapping):
        problems.append(InvalidInput("credentials is not a mapping of profiles", field=where,
                                     fix="write <profile>: {username: …, password: …}"))
        return
    for name, entry in data.items():
        at = f"{where}.{name}"
        if not isinstance(entry, Mapping):
            problems.append(InvalidInput("a profile is a mapping", field=at,
                                         fix="give username, password, enable_secret, ssh_key"))
            continue
        unknown = sorted(set(map(str, entry)) - set(PROFILE_FIELDS))
        if unknown:
            problems.append(InvalidInput(f"unknown keys {unknown}", field=at,
                                         fix=f"use {', '.join(PROFILE_FIELDS)}"))
            continue
        if name in out:
            problems.append(InvalidInput(f"profile {name!r} is defined twice", field=at,
                                         fix="define each profile once (inline or in the "
                                             "credentials file)"))
            continue
        try:
            out[str(name)] = CredentialSpec(name=name,
                                            **{f: _text(entry.get(f)) for f in PROFILE_FIELDS})
        except InvalidInput as exc:
            problems.append(InvalidInput(exc.message, field=f"{at}.{exc.field}", fix=exc.fix))


def _text(value: object) -> Any:
    # YAML reads `password: 1234` as an int; a password is text.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _yaml_row(entry: object, where: str, problems: list[InvalidInput]) -> Row | None:
    if not isinstance(entry, Mapping):
        problems.append(InvalidInput("a device is a mapping", field=where,
                                     fix="write `- name: …` with host, platform, …"))
        return None
    unknown = sorted(set(map(str, entry)) - set(DEVICE_FIELDS))
    if unknown:
        problems.append(InvalidInput(f"unknown keys {unknown}", field=where,
                                     fix=f"use {', '.join(DEVICE_FIELDS)}"))
        return None
    return _row(dict(entry), where, problems)


def _row(values: dict[str, Any], where: str, problems: list[InvalidInput]) -> Row | None:
    label = f"{where} ({values['name']})" if isinstance(values.get("name"), str) else where
    missing = [f for f in REQUIRED if values.get(f) in (None, "")]
    if missing:
        problems.append(InvalidInput(f"{label}: {', '.join(missing)} missing",
                                     field=f"{where}.{missing[0]}",
                                     fix=f"every device needs {', '.join(REQUIRED)}"))
        return None
    given = {k: v for k, v in values.items() if not (k == "port" and v is None)}
    try:
        spec = DeviceSpec(**{k: v for k, v in given.items() if v is not None or k not in
                             ("tags", "vars")})
    except InvalidInput as exc:
        problems.append(InvalidInput(f"{label}: {exc.message}", field=f"{where}.{exc.field}",
                                     fix=exc.fix))
        return None
    return Row(spec, frozenset(given), where)


def parse_csv(text: str, *, source: str = "<csv>") -> Inventory:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    problems: list[InvalidInput] = []
    unknown = [h for h in header if h not in CSV_COLUMNS]
    absent = [c for c in REQUIRED if c not in header]
    if unknown or absent:
        detail = f"unknown columns {unknown}" if unknown else f"missing columns {absent}"
        raise InventoryError(source, [InvalidInput(
            detail, field="line 1", fix=f"start with the header {','.join(CSV_COLUMNS[:7])} "
                                        f"(name, host and platform are required)")])
    rows = []
    for record in reader:
        where = f"line {reader.line_num}"
        if None in record:  # more cells than header columns
            problems.append(InvalidInput("more cells than columns", field=where,
                                         fix="quote cells that contain commas"))
            continue
        cells = {k: (v or "").strip() for k, v in record.items()}
        if not any(cells.values()):
            continue
        values: dict[str, Any] = {k: v or None for k, v in cells.items()}
        if "tags" in cells:
            values["tags"] = [t.strip() for t in cells["tags"].split(";") if t.strip()]
        if values.get("port") is not None:
            try:
                values["port"] = int(values["port"])
            except ValueError:
                problems.append(InvalidInput(f"port {values['port']!r} is not a number",
                                             field=f"{where}.port",
                                             fix="use a number from 1 to 65535, or leave it "
                                                 "empty for 22"))
                continue
        if (row := _row(values, where, problems)) is not None:
            rows.append(row)
    return _checked(Inventory(source, rows), problems)


def _checked(inventory: Inventory, problems: list[InvalidInput]) -> Inventory:
    first: dict[str, str] = {}
    for row in inventory.rows:
        if (earlier := first.setdefault(row.spec.name, row.where)) != row.where:
            problems.append(InvalidInput(f"device {row.spec.name!r} is also at {earlier}",
                                         field=f"{row.where}.name",
                                         fix="give each device once"))
    if problems:
        raise InventoryError(inventory.source, problems)
    return inventory


# -- writing to the store ------------------------------------------------------------------


async def import_inventory(store: Store, inventory: Inventory) -> ImportReport:
    """Write the inventory in one transaction; raises InventoryError (and writes nothing) if
    a device names a credentials profile that neither the file nor the store has."""
    async with store.transaction() as tx:
        in_file = {c.name for c in inventory.credentials}
        wanted = sorted({r.spec.credentials for r in inventory.rows
                         if r.spec.credentials and r.spec.credentials not in in_file})
        known = in_file | await tx.credentials.existing(wanted)
        missing = [InvalidInput(f"{r.where} ({r.spec.name}): credentials profile "
                                f"{r.spec.credentials!r} does not exist",
                                field=f"{r.where}.credentials",
                                fix="define it under credentials: (or in credentials_file), "
                                    "or create it first")
                   for r in inventory.rows if r.spec.credentials and
                   r.spec.credentials not in known]
        if missing:
            raise InventoryError(inventory.source, missing)
        credentials = await tx.credentials.upsert_many(inventory.credentials)
        existing = await tx.devices.get_many([r.spec.name for r in inventory.rows])
        specs = [_merge(r, existing.get(r.spec.name)) for r in inventory.rows]
        devices = await tx.devices.upsert_many(specs)
    if devices.created + credentials.created >= BULK:
        await store.analyze()
    return ImportReport(devices=devices, credentials=credentials)


def _merge(row: Row, current: Device | None) -> DeviceSpec:
    """A known device keeps what the file does not mention (tags set through the API, …)."""
    if current is None:
        return row.spec
    change = DeviceUpdate(**{f: getattr(row.spec, f) for f in row.given})
    return change.apply(current.spec())


async def import_file(store: Store, path: Path) -> ImportReport:
    # Parsing 10,000 devices takes seconds of CPU: not on the event loop.
    return await import_inventory(store, await asyncio.to_thread(load, path))
