"""HTTP routes for ingest jobs: POST /v1/ingest, GET /v1/jobs, GET /v1/jobs/{id}.

Only files under ESRAG_ALLOWED_ROOTS can be submitted; paths are resolved (``..`` and
symbolic links included) before the check, so nothing outside the roots can be named, and
the worker resolves each path again when it opens the file (JobAccess.roots).

``POST /v1/ingest`` checks only what is cheap and certain (the body, the key's role and
index pattern, each path inside the roots and present) and answers 202 at once with the
job in state ``expanding``: a worker walks the folders, applies ESRAG_INGEST_MAX_FILES,
and with ``sync`` deletes the vanished files' chunks (workers/expand.py).

The app mounts this router behind ``require_role("ingest")``. An ingest key submits only
into indices its pattern allows (the server's index when it has none), its filters are
stamped on every document of the job, and it sees only the jobs it submitted; listing
every job is for admin keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from esrag.errors import EsragError
from esrag.keys import principal_of
from esrag.settings import INDEX_NAME_PATTERN, Settings
from workers.jobstore import JobAccess, JobStore


class IngestRequest(BaseModel):
    """Sources to ingest: paths under the allowed roots (absolute, or relative to the first root)."""

    paths: list[str] = Field(min_length=1, max_length=1000)
    index: str | None = Field(None, pattern=INDEX_NAME_PATTERN, max_length=100)
    sync: bool = Field(False, description="also delete documents whose file under a given folder is gone")


class IngestAccepted(BaseModel):
    """A submitted job; its folders are expanded on a worker (follow GET /v1/jobs/{id})."""

    job: str
    status: str = "expanding"
    files: int = Field(0, description="files planned so far: 0, a worker expands the paths "
                                      "(files_total of GET /v1/jobs/{id} once it has)")
    deleted: int = Field(0, description="with sync: counted in the job's deleted once a worker synced")
    deleted_sources: list[str] = Field(default_factory=list)


def resolve_allowed(raw: str, roots: list[Path]) -> Path:
    """The real path of ``raw`` when it lies under one of ``roots``; EsragError otherwise."""
    if not raw or "\x00" in raw or len(raw) > 4096:
        raise EsragError("invalid path")
    candidate = Path(raw) if os.path.isabs(raw) else roots[0] / raw
    real = Path(os.path.realpath(candidate))
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise EsragError(f"path {raw!r} is outside the allowed roots")
    if not real.exists():
        raise EsragError(f"path {raw!r} does not exist")
    return real


def make_jobs_router(settings: Settings) -> APIRouter:
    """The ingest-job routes for ``settings`` (authentication is added by the app)."""
    router = APIRouter(tags=["jobs"])
    roots = [Path(os.path.realpath(r)) for r in settings.allowed_roots]

    @router.post("/v1/ingest", status_code=202, response_model=IngestAccepted)
    def submit(body: IngestRequest, request: Request) -> IngestAccepted:
        """Submit an ingest job for files or folders under the allowed roots; answers at once
        with the job ``expanding`` (a worker walks the folders: GET /v1/jobs/{id} follows it)."""
        from workers.submit import submit_expansion

        principal = principal_of(request)
        if not roots:
            raise HTTPException(403, "ingest over HTTP is disabled: set ESRAG_ALLOWED_ROOTS")
        index = body.index or settings.index
        if not principal.may_use_index(index, settings.index):
            raise HTTPException(403, f"the API key {principal.name!r} may not ingest into index {index!r} "
                                     f"(allowed: {principal.index or settings.index})")
        resolved = list(dict.fromkeys(str(resolve_allowed(p, roots)) for p in body.paths))
        job_settings = settings.model_copy(update={"index": index})
        stamp = {k.removeprefix("meta."): v for k, v in principal.filters.items()}
        access = JobAccess(owner=principal.name, stamp=stamp, roots=[str(r) for r in roots])
        # links inside the folders are checked by the worker, when it opens each file
        job_id = submit_expansion(resolved, job_settings, access, sync=body.sync)
        return IngestAccepted(job=job_id)

    @router.get("/v1/jobs")
    def list_jobs(request: Request, limit: int = Query(20, ge=1, le=200)) -> list[dict[str, Any]]:
        """The newest jobs first (admin keys)."""
        principal = principal_of(request)
        if not principal.allows("admin"):
            raise HTTPException(403, f"the API key {principal.name!r} ({principal.role}) may not list "
                                     "every job; read your own with GET /v1/jobs/{id}")
        return [j.to_dict() for j in JobStore.connect(settings).list(limit)]

    @router.get("/v1/jobs/{job_id}")
    def get_job(job_id: str, request: Request) -> dict[str, Any]:
        """One job with its counters and failures (an ingest key sees only its own jobs)."""
        if len(job_id) > 64:
            raise HTTPException(404, "no such job")
        store = JobStore.connect(settings)
        job = store.get(job_id)
        principal = principal_of(request)
        if job is not None and not principal.allows("admin"):
            access = store.access(job_id)
            if access is None or access.owner != principal.name:
                job = None  # another key's job is as good as absent
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job.to_dict()

    return router
