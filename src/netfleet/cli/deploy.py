"""`netfleet deploy`: deployments of N nodes through the REST API — create, list, show, watch
them converge, roll out new config generations, scale, retry failed nodes, rm."""

from __future__ import annotations

import json
import time
from collections import deque
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from netfleet.cli.common import KeyOption, UrlOption, client, where_terms
from netfleet.client import Client
from netfleet.domain.errors import NotFound

app = typer.Typer(help="Deployments: create, list, show, watch, update, scale, retry, rm.",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)

MAX_NODES = 10_000  # the API's largest deployment
NODE_PAGE = 1000
EVENT_PAGE = 500  # the API's largest page of events
STATES = ("pending", "provisioning", "configuring", "running", "failed")  # lifecycle order
IN_FLIGHT = ("pending", "provisioning", "configuring")
STATE_STYLE = {"pending": "dim", "provisioning": "yellow", "configuring": "yellow",
               "running": "green", "failed": "red"}
STATUS_STYLE = {"pending": "yellow", "ready": "green", "degraded": "red",
                "deleting": "magenta"}


class Provider(StrEnum):
    SIMULATOR = "simulator"
    INVENTORY = "inventory"


# -- option checks: a bad value is a usage error (exit 2) naming the option and the fix -------
def _vars(pairs: list[str] | None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`asn=65001` -> {"asn": 65001}: values are read as YAML scalars, so numbers stay numbers
    and `true` is a boolean; laid over `base`."""
    found = dict(base or {})
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE; write e.g. --var "
                                     f"ntp=192.0.2.1", param_hint="--var")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, list | dict):
            raise typer.BadParameter(f"{pair!r}: the value is a YAML "
                                     f"{'list' if isinstance(value, list) else 'mapping'}; "
                                     f"put lists and mappings in --vars-file",
                                     param_hint="--var")
        if not isinstance(value, str | int | float | bool | None):
            value = text  # a date or time: JSON has none, and the text is what was meant
        found[key.strip()] = value
    return found


def _vars_file(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path} is not valid YAML: {exc}",
                                 param_hint="--vars-file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} holds a YAML {type(data).__name__}; write a mapping "
                                 f"of names to values (ntp: 192.0.2.1)",
                                 param_hint="--vars-file")
    # Dates and times become their ISO text: the API takes JSON.
    loaded: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return loaded


def _template(file: typer.FileText | None) -> str | None:
    return None if file is None else file.read()


IdArgument = Annotated[str, typer.Argument(metavar="ID", help="Deployment id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TemplateOption = Annotated[typer.FileText | None, typer.Option(
    "--template", metavar="FILE", help="Config template (Jinja2, rendered per node with "
                                       "node.ordinal, node.hostname, node.ip_address, "
                                       "node.generation, deployment.name, device and the "
                                       "vars); '-' reads stdin.")]
VarOption = Annotated[list[str] | None, typer.Option(
    "--var", metavar="KEY=VALUE", help="Template variable, repeatable; the value is read as "
                                       "YAML (65001 is a number, true a boolean).")]
VarsFileOption = Annotated[Path | None, typer.Option(
    "--vars-file", metavar="FILE", exists=True, dir_okay=False, readable=True,
    help="YAML mapping of template variables (--var overrides).")]
DescriptionOption = Annotated[str | None, typer.Option(help="Free text.")]
ProfileOption = Annotated[str | None, typer.Option(
    "--telemetry-profile", metavar="NAME", help="Telemetry profile polling running nodes "
                                                "(netfleet telemetry profiles).")]


# -- create, list, show ---------------------------------------------------------------------
@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=MAX_NODES,
                                       help="How many nodes.")] = 1,
    provider: Annotated[Provider, typer.Option(
        help="simulator: new devices from `netfleet sim`; inventory: adopt devices --where "
             "selects.")] = Provider.SIMULATOR,
    template: TemplateOption = None,
    var: VarOption = None,
    vars_file: VarsFileOption = None,
    telemetry_profile: ProfileOption = None,
    platform: Annotated[str | None, typer.Option(
        help="simulator: the nodes' platform (default cisco_ios).")] = None,
    where: Annotated[list[str] | None, typer.Option(
        "--where", "-w", metavar="TERM", callback=where_terms,
        help="inventory: selector term of the devices to adopt, repeatable: tag=edge, "
             "site=lab1.")] = None,
    remediate: Annotated[bool, typer.Option(
        "--remediate", help="Re-apply the config when a node drifts from it.")] = False,
    description: DescriptionOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Create a deployment of N nodes; each goes pending → provisioning → configuring →
    running (or failed). Follow it with `netfleet deploy watch ID`."""
    options: dict[str, Any] = {}
    if provider is Provider.SIMULATOR:
        if where:
            raise typer.BadParameter("--where selects inventory devices; give --provider "
                                     "inventory, or leave --where out", param_hint="--where")
        if platform:
            options["platform"] = platform
    else:
        if platform:
            raise typer.BadParameter("the inventory provider adopts devices as they are; "
                                     "select them with --where platform=… instead",
                                     param_hint="--platform")
        if not where:
            raise typer.BadParameter("the inventory provider adopts the devices a selector "
                                     "finds; give --where TERM, e.g. --where tag=edge",
                                     param_hint="--where")
        options["where"] = where
    body: dict[str, Any] = {
        "name": name, "target_node_count": nodes, "provider": provider.value,
        "config_template": _template(template), "vars": _vars(var, _vars_file(vars_file)),
        "telemetry_profile": telemetry_profile, "options": options, "remediate": remediate,
        "description": description}
    with client(url, api_key) as sdk:
        made = sdk.create_deployment(**body)
    if as_json:
        typer.echo(json.dumps(made, indent=2))
        return
    out.print(f"Created deployment {escape(made['name'])} ({made['id']}): "
              f"{made['target_node_count']} {_plural(made['target_node_count'], 'node')} "
              f"({made['provider']}), generation {made['target_generation']}.")
    out.print(f"Follow it: netfleet deploy watch {made['id']}", soft_wrap=True)


@app.command("list")
def list_deployments(
    skip: Annotated[int, typer.Option(min=0, help="Skip the first N (oldest first).")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Show at most N.")] = 100,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Deployments, oldest first, with their status and how far their nodes got."""
    with client(url, api_key) as sdk:
        found = sdk.deployments(skip=skip, limit=limit)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"{len(found)} {_plural(len(found), 'deployment')}")
    table.add_column("id", no_wrap=True)
    for column in ("name", "provider", "status", "nodes", "generation", "created"):
        table.add_column(column, overflow="fold")
    for d in found:
        table.add_row(d["id"], escape(d["name"]), d["provider"], _status(d["status"]),
                      escape(_counts_line(d, zeros=False)), _generation(d),
                      _time(d["created_at"]))
    out.print(table)
    if len(found) >= limit:
        err.print(f"showing {len(found)}; there may be more (--skip {skip + len(found)})")


@app.command("show")
def show(deployment_id: IdArgument, as_json: Annotated[bool, typer.Option(
            "--json", help="Print the deployment with its `nodes` as JSON.")] = False,
         url: UrlOption = None, api_key: KeyOption = None) -> None:
    """A deployment: status, nodes per state, generations — and its nodes."""
    with client(url, api_key) as sdk:
        deployment = sdk.deployment(deployment_id)
        nodes = _all_nodes(sdk, deployment_id)
    if as_json:
        typer.echo(json.dumps({**deployment, "nodes": nodes}, indent=2))
        return
    out.print(_summary(deployment))
    out.print(_nodes_table(nodes, title=f"{len(nodes)} {_plural(len(nodes), 'node')}"))


# -- watch ----------------------------------------------------------------------------------
@app.command("watch")
def watch(
    deployment_id: IdArgument,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")]
    = 1.0,
    timeout: Annotated[float, typer.Option(min=0.0, help="Give up after N seconds (exit 2).")]
    = 600.0,
    follow: Annotated[bool, typer.Option("--follow/--no-follow",
                                         help="Refresh until settled, or print one "
                                              "snapshot.")] = True,
    events: Annotated[int, typer.Option("--events", min=0, max=100,
                                        help="Show the newest N events.")] = 10,
    as_json: Annotated[bool, typer.Option(
        "--json", help="No live view: print the deployment with its `nodes` as JSON at the "
                       "end.")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Watch the nodes converge: counts per state, generations, status, the newest events.
    Exit 0 when ready; 1 when degraded (once no node is still converging; the failed nodes
    are listed with their reasons); 2 when --timeout passes first."""
    deadline = time.monotonic() + timeout
    with client(url, api_key) as sdk:
        view = _Watch(sdk, deployment_id, keep=0 if as_json else events)
        code = view.poll()
        if follow and as_json:
            while code is None and time.monotonic() < deadline:
                code = view.wait_and_poll(interval, deadline)
        elif follow:
            # Without a terminal, Live prints only the last view: what a CI log should hold.
            with Live(view.render(), console=out, auto_refresh=False) as live:
                while code is None and time.monotonic() < deadline:
                    code = view.wait_and_poll(interval, deadline)
                    live.update(view.render(), refresh=True)
            if not out.is_terminal:
                out.line()  # Live ends its last view with a newline on a terminal only
        elif not as_json:
            out.print(view.render())
        nodes = _all_nodes(sdk, deployment_id) if as_json or view.failed else []
    if as_json:
        typer.echo(json.dumps({**view.deployment, "nodes": nodes}, indent=2))
    elif view.failed:
        out.print(_nodes_table([n for n in nodes if n["state"] == "failed"],
                               title="failed nodes", brief=True))
    if code is None and follow:
        err.print(f"timed out after {timeout:g}s: deployment {escape(view.name)} is still "
                  f"{view.deployment['status']} ({escape(_counts_line(view.deployment))}; "
                  f"{_generation(view.deployment)})")
        raise typer.Exit(2)
    if code is None:  # a snapshot of a deployment still converging
        code = 1 if view.failed else 0
    raise typer.Exit(code)


class _Watch:
    """The deployment and its newest events, refreshed on `poll`."""

    def __init__(self, sdk: Client, deployment_id: str, keep: int) -> None:
        self.sdk, self.id = sdk, deployment_id
        self.deployment: dict[str, Any] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.after = 0
        self.ordinals: dict[str, int] = {}

    @property
    def name(self) -> str:
        return str(self.deployment.get("name", self.id))

    @property
    def failed(self) -> bool:
        return bool(self.deployment.get("node_counts", {}).get("failed"))

    def poll(self) -> int | None:
        """Refresh; the exit code once the deployment has settled (None while it has not)."""
        try:
            self.deployment = self.sdk.deployment(self.id)
        except NotFound:
            if not self.deployment:
                raise
            err.print(f"[red]error:[/red] deployment {escape(self.name)} ({self.id}) was "
                      f"deleted")
            raise typer.Exit(1) from None
        # A long log is read in pages; at most 20 per refresh so the view keeps moving.
        for _ in range(20 if self.events.maxlen else 0):
            page = self.sdk.deployment_events(self.id, after=self.after, limit=EVENT_PAGE)
            if page:
                self.after = page[-1]["id"]
                self.events.extend(page)
            if len(page) < EVENT_PAGE:
                break
        unknown = {e["node_id"] for e in self.events if e["node_id"]} - set(self.ordinals)
        if unknown:  # new nodes (or a first look): name them by ordinal, as `show` does
            self.ordinals.update({n["id"]: n["ordinal"]
                                  for n in _all_nodes(self.sdk, self.id)})
        return _settled(self.deployment)

    def wait_and_poll(self, interval: float, deadline: float) -> int | None:
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        return self.poll()

    def render(self) -> RenderableType:
        d = self.deployment
        table = Table(title=f"newest {len(self.events)} events", title_justify="left",
                      expand=True)
        table.add_column("time", no_wrap=True)
        table.add_column("node", no_wrap=True, justify="right")
        table.add_column("event", no_wrap=True)
        table.add_column("reason", overflow="fold", ratio=1)
        for e in self.events:
            node = self.ordinals.get(e["node_id"]) if e["node_id"] else None
            table.add_row(_time(e["at"], clock=True),
                          "" if node is None else f"#{node}",
                          escape(_event(e)), escape(e["reason"] or ""))
        parts: list[RenderableType] = [
            f"deployment [bold]{escape(d['name'])}[/bold] ({d['id']}): "
            f"{_status(d['status'])}",
            f"nodes      {_counts_markup(d)}",
            f"generation {_generation(d)}"]
        if self.events.maxlen:
            parts.append(table)
        return Group(*parts)


def _settled(d: dict[str, Any]) -> int | None:
    """0 ready; 1 degraded with no node still on its way (so every failure is known);
    None otherwise."""
    if d["status"] == "ready":
        return 0
    counts = d["node_counts"]
    converging = any(counts.get(s) for s in IN_FLIGHT) or (
        counts.get("running") and d["observed_generation"] < d["target_generation"])
    if d["status"] == "degraded" and not converging:
        return 1
    return None


# -- update, scale, retry, rm ---------------------------------------------------------------
@app.command("update")
def update(
    deployment_id: IdArgument,
    template: TemplateOption = None,
    var: Annotated[list[str] | None, typer.Option(
        "--var", metavar="KEY=VALUE", help="Set a template variable (the others stay), "
                                           "repeatable; the value is read as YAML.")] = None,
    vars_file: Annotated[Path | None, typer.Option(
        "--vars-file", metavar="FILE", exists=True, dir_okay=False, readable=True,
        help="YAML mapping that replaces all template variables (--var overrides).")] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", "-n", min=0, max=MAX_NODES,
                                              help="Scale to N nodes.")] = None,
    remediate: Annotated[bool | None, typer.Option(
        "--remediate/--no-remediate", help="Re-apply the config when a node drifts.")] = None,
    telemetry_profile: ProfileOption = None,
    description: DescriptionOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Change a deployment. A new template or new vars is a new generation, rolled out to
    every node (`netfleet deploy watch ID` follows it)."""
    replaced = _vars_file(vars_file)
    changes: dict[str, Any] = {k: v for k, v in {
        "config_template": _template(template), "target_node_count": nodes,
        "remediate": remediate, "telemetry_profile": telemetry_profile,
        "description": description}.items() if v is not None}
    if not changes and replaced is None and not var:
        raise typer.BadParameter("nothing to change; give --template, --var, --vars-file, "
                                 "--nodes, --remediate/--no-remediate, --telemetry-profile "
                                 "or --description")
    if var:
        _vars(var)  # refused before the API is asked
    with client(url, api_key) as sdk:
        before = sdk.deployment(deployment_id)
        if replaced is not None or var:
            # The API replaces vars whole: --var changes the keys it names, keeps the rest.
            base = replaced if replaced is not None else before["vars"]
            changes["vars"] = _vars(var, base)
        after = sdk.update_deployment(deployment_id, **changes)
    if as_json:
        typer.echo(json.dumps(after, indent=2))
        return
    name = escape(after["name"])
    if after["target_generation"] != before["target_generation"]:
        out.print(f"Updated deployment {name}: generation {after['target_generation']} "
                  f"(was {before['target_generation']}) rolls out to "
                  f"{after['target_node_count']} {_plural(after['target_node_count'], 'node')}.")
    else:
        out.print(f"Updated deployment {name} (generation {after['target_generation']}, "
                  f"unchanged).")
    if after["target_node_count"] != before["target_node_count"]:
        out.print(f"Scaling from {before['target_node_count']} to "
                  f"{after['target_node_count']} nodes.")


@app.command("scale")
def scale(deployment_id: IdArgument,
          count: Annotated[int, typer.Argument(min=0, max=MAX_NODES, metavar="N",
                                               help="Nodes wanted.")],
          as_json: JsonOption = False, url: UrlOption = None,
          api_key: KeyOption = None) -> None:
    """Scale to N nodes: new nodes start pending; scaling down releases the last nodes."""
    with client(url, api_key) as sdk:
        before = sdk.deployment(deployment_id)
        after = sdk.scale_deployment(deployment_id, count)
    if as_json:
        typer.echo(json.dumps(after, indent=2))
        return
    out.print(f"Scaling deployment {escape(after['name'])} from "
              f"{before['target_node_count']} to {count} {_plural(count, 'node')}.")


@app.command("retry")
def retry(deployment_id: IdArgument,
          node_refs: Annotated[list[str] | None, typer.Argument(
              metavar="[NODE]...", help="Node ids or ordinals (default: every failed node).")]
          = None,
          url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Start failed nodes on their lifecycle again (fix the template first if it was the
    cause: `netfleet deploy update ID --template FILE`)."""
    with client(url, api_key) as sdk:
        nodes = _all_nodes(sdk, deployment_id)
        if node_refs:
            by_ordinal = {str(n["ordinal"]): n for n in nodes}
            by_id = {n["id"]: n for n in nodes}
            chosen = []
            for ref in node_refs:
                node = by_ordinal.get(ref) if ref.isdigit() else by_id.get(ref)
                if node is None:
                    err.print(f"[red]error:[/red] deployment {deployment_id} has no node "
                              f"{escape(ref)} — see netfleet deploy show {deployment_id}")
                    raise typer.Exit(1)
                chosen.append(node)
        else:
            chosen = [n for n in nodes if n["state"] == "failed"]
            if not chosen:
                out.print("No failed nodes to retry.")
                return
        for node in chosen:
            sdk.retry_node(deployment_id, node["id"])
            out.print(f"Retrying node #{node['ordinal']} ({node['id']}): pending again.")


@app.command("rm")
def remove(
    deployment_ids: Annotated[list[str], typer.Argument(metavar="ID...",
                                                        help="Deployment ids.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait",
                                       help="Wait until every node is released and the "
                                            "deployment is gone.")] = True,
    timeout: Annotated[float, typer.Option(min=0.0, help="Stop waiting after N seconds "
                                                         "(exit 2).")] = 300.0,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Delete deployments: their nodes are released, their events kept."""
    with client(url, api_key) as sdk:
        for deployment_id in deployment_ids:
            sdk.remove_deployment(deployment_id)
        if not wait:
            for deployment_id in deployment_ids:
                out.print(f"Deleting deployment {deployment_id} (it shows `deleting` until "
                          f"its nodes are released).")
            return
        deadline = time.monotonic() + timeout
        for deployment_id in deployment_ids:
            while _exists(sdk, deployment_id):
                if time.monotonic() >= deadline:
                    err.print(f"timed out after {timeout:g}s: deployment {deployment_id} is "
                              f"still deleting")
                    raise typer.Exit(2)
                time.sleep(0.2)
            out.print(f"Deleted deployment {deployment_id}.")


# -- helpers --------------------------------------------------------------------------------
def _exists(sdk: Client, deployment_id: str) -> bool:
    try:
        sdk.deployment(deployment_id)
    except NotFound:
        return False
    return True


def _all_nodes(sdk: Client, deployment_id: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    while True:
        page = sdk.deployment_nodes(deployment_id, skip=len(nodes), limit=NODE_PAGE)
        nodes += page
        if len(page) < NODE_PAGE:
            return nodes


def _summary(d: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    options = " ".join(f"{k}={v}" for k, v in d["options"].items() if not isinstance(v, list))
    options += "".join(f" where {' '.join(v)}" for v in d["options"].values()
                       if isinstance(v, list))
    template = d["config_template"]
    rows = [
        ("deployment", f"{escape(d['name'])} ({d['id']})"),
        ("status", _status(d["status"])),
        ("nodes", f"{d['current_node_count']} of {d['target_node_count']}: "
                  f"{_counts_markup(d)}"),
        ("generation", _generation(d)),
        ("provider", escape(f"{d['provider']} {options}".strip())),
        ("template", f"{len(template.splitlines())} lines" if template else "—"),
        ("vars", escape(" ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                                 for k, v in d["vars"].items()) or "—")),
        ("telemetry", escape(d["telemetry_profile"] or "—")),
        ("remediate", "yes" if d["remediate"] else "no"),
        ("created", f"{_time(d['created_at'])} by {escape(d['created_by'] or '?')}"),
    ]
    if d["description"]:
        rows.insert(1, ("description", escape(d["description"])))
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def _nodes_table(nodes: list[dict[str, Any]], *, title: str, brief: bool = False) -> Table:
    table = Table(title=title, title_justify="left")
    columns = (["#", "id", "hostname", "reason"] if brief else
               ["#", "id", "state", "hostname", "ip address", "device", "generation",
                "attempts", "reason"])
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("#", "id"),
                         justify="right" if column in ("#", "attempts") else "left")
    for n in nodes:
        cells = {"#": str(n["ordinal"]), "id": n["id"], "state": _state(n["state"]),
                 "hostname": escape(n["hostname"] or "—"),
                 "ip address": escape(n["ip_address"] or "—"),
                 "device": escape(n["device"] or "—"),
                 "generation": f"{n['observed_generation']}/{n['target_generation']}"
                               + (" [red]drift[/red]" if n["drift"] else ""),
                 "attempts": str(n["attempts"]), "reason": escape(n["reason"] or "")}
        table.add_row(*(cells[c] for c in columns))
    return table


def _counts_markup(d: dict[str, Any]) -> str:
    counts = d["node_counts"]
    return " · ".join(f"[{STATE_STYLE[s]}]{s} {counts.get(s, 0)}[/{STATE_STYLE[s]}]"
                      for s in STATES)


def _counts_line(d: dict[str, Any], *, zeros: bool = True) -> str:
    counts = d["node_counts"]
    shown = [f"{s} {counts.get(s, 0)}" for s in STATES if zeros or counts.get(s)]
    return ", ".join(shown) or "no nodes"


def _generation(d: dict[str, Any]) -> str:
    return f"observed {d['observed_generation']} / target {d['target_generation']}"


def _status(status: str) -> str:
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{escape(status)}[/{style}]"


def _state(state: str) -> str:
    style = STATE_STYLE.get(state, "white")
    return f"[{style}]{escape(state)}[/{style}]"


def _event(e: dict[str, Any]) -> str:
    if e["from_state"] or e["to_state"]:
        return f"{e['from_state'] or '∅'} → {e['to_state'] or '∅'}"
    return str(e["kind"])


def _time(iso: str, *, clock: bool = False) -> str:
    """ISO time from the API -> local `2025-01-01 12:00:00` (or `12:00:00`)."""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return escape(iso)
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone()
    return at.strftime("%H:%M:%S" if clock else "%Y-%m-%d %H:%M:%S")


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
