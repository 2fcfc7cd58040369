"""/api/v1/jobs: submit (202 at once), read (with long-poll), list, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from netfleet.api.deps import Operator, ServicesDep, Viewer
from netfleet.domain.jobs import JobKind, JobRequest, JobView, Status

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=202, response_model=JobView)
async def submit(body: JobRequest, svc: ServicesDep, who: Operator,
                 response: Response) -> JobView:
    view: JobView = await svc.jobs.submit(body, requested_by=who.name)
    response.headers["Location"] = f"/api/v1/jobs/{view.id}"
    return view


@router.get("/{job_id}", response_model=JobView)
async def get(job_id: str, svc: ServicesDep, who: Viewer,
              wait: Annotated[float, Query(ge=0, le=300,
                                           description="seconds to wait for the end")] = 0
              ) -> JobView:
    view: JobView = await svc.jobs.get(job_id, wait=wait)
    return view


@router.get("")
async def list_jobs(svc: ServicesDep, who: Viewer,
                    status: Status | None = None, kind: JobKind | None = None,
                    device: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    after: Annotated[str | None, Query(description="the previous page's "
                                                                   "`next`")] = None
                    ) -> dict[str, Any]:
    jobs, cursor = await svc.jobs.list(status=status, kind=kind, device=device, limit=limit,
                                       after=after)
    return {"jobs": [j.model_dump(mode="json", exclude={"results"}) for j in jobs],
            "next": cursor}


@router.delete("/{job_id}", response_model=JobView)
async def cancel(job_id: str, svc: ServicesDep, who: Operator) -> JobView:
    view: JobView = await svc.jobs.cancel(job_id)
    return view
