"""``GET /workers``: the fleet, as the workers registered themselves in the store (``store.workers``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from xorjobs.api.deps import ServiceDep, reject_unknown_query
from xorjobs.api.schemas import WorkerList, reply
from xorjobs.store.workers import list_workers

router = APIRouter(tags=["workers"], dependencies=[Depends(reject_unknown_query)])


@router.get("/workers", summary="The workers: live and lost ones (stopped ones too with all=true)")
def workers(
    service: ServiceDep,
    include_stopped: Annotated[
        bool, Query(alias="all", description="Also the workers that shut down cleanly")
    ] = False,
) -> WorkerList:
    return reply(WorkerList, {"workers": list_workers(service.ready().url, include_stopped)})
