"""/api/v1/templates: render a Jinja2 config template, parse CLI output."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from netfleet.api.deps import ServicesDep, Viewer

router = APIRouter(prefix="/templates", tags=["templates"])


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str = Field(max_length=200_000)
    vars: dict[str, Any] = Field(default_factory=dict)


class ParseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output: str = Field(max_length=10_000_000)
    platform: str
    command: str = ""
    kind: str = Field("textfsm", pattern="^(textfsm|ttp|regex)$")
    template: str | None = None


@router.post("/render")
async def render(body: RenderRequest, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    text = svc.render(body.template, body.vars)
    return {"text": text, "lines": svc.config_lines(text)}


@router.post("/parse")
async def parse(body: ParseRequest, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    records = await svc.parsers.parse_async(body.output, platform=body.platform,
                                            command=body.command, kind=body.kind,
                                            template=body.template)
    return {"records": records}
