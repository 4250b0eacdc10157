"""Everything the app builds at start-up, in one typed bundle kept on ``app.state.services``."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import MasterKeyAuthenticator
from gateway.pipeline import Pipeline
from gateway.runtime import RoutingTable
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    table: RoutingTable
    pipeline: Pipeline
    master: MasterKeyAuthenticator
    #: "demo" when serving the built-in mock upstream, otherwise the routing file's path.
    source: str
