"""FastAPI dependencies: everything a handler needs, built in the lifespan and kept on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.services import Services


def services_of(request: Request) -> Services:
    """The app's services, for the data plane's plain Starlette handlers (gateway/api/openai.py)."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, which cost a thread
    # hop per request and kept 16 idle "AnyIO worker" threads (and their malloc arenas) under load.
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]
