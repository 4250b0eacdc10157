"""``DELETE /admin/cache``: purge cached responses by key, team and alias (master key only; audited)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from gateway.api.admin import Caller, request_id_of
from gateway.api.deps import ServicesDep
from gateway.api.openapi import ERROR_RESPONSES
from gateway.cache.types import PurgeFilter
from gateway.errors import PermissionDenied

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)
log = logging.getLogger("gateway.cache")

Filter = Annotated[str | None, Query(min_length=1, max_length=128)]


class CachePurged(BaseModel):
    """Entries removed, per tier: ``exact`` counts stored responses (semantic hits read them too),
    ``semantic`` the vectors that pointed at them."""

    exact: int
    semantic: int
    key_id: str | None
    team: str | None
    alias: str | None


@router.delete("/cache", response_model=CachePurged,
               summary="Purge cached responses matching every filter given (none: everything); master key only")
async def purge_cache(caller: Caller, services: ServicesDep, request: Request, key_id: Filter = None,
                      team: Filter = None, alias: Filter = None) -> CachePurged:
    if caller.role != "master":
        raise PermissionDenied("purging the cache needs the master key")
    counts = {"exact": 0, "semantic": 0}
    if services.cache is not None:
        counts = await services.cache.purge(PurgeFilter(key_id=key_id, team=team, alias=alias))
    await services.key_admin.record_cache_purge(caller, key_id=key_id, team=team, alias=alias, removed=counts,
                                                request_id=request_id_of(request))
    log.info("cache purged (key_id=%s team=%s alias=%s): %d responses, %d vectors", key_id, team, alias,
             counts["exact"], counts["semantic"])
    return CachePurged(exact=counts["exact"], semantic=counts["semantic"], key_id=key_id, team=team, alias=alias)
