"""FastAPI dependencies: everything a handler needs, built in the lifespan and kept on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.pipeline import Pipeline
from gateway.runtime import RoutingTable
from gateway.services import Services
from gateway.settings import Settings


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_pipeline(request: Request) -> Pipeline:
    return get_services(request).pipeline


def get_settings(request: Request) -> Settings:
    return get_services(request).settings


def get_table(request: Request) -> RoutingTable:
    return get_services(request).table


ServicesDep = Annotated[Services, Depends(get_services)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TableDep = Annotated[RoutingTable, Depends(get_table)]
