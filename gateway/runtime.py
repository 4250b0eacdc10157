"""The live routing table, and how a changed routing file replaces it without a restart.

A reload validates the whole file first; an invalid file leaves the running table in place. The
swap is a single attribute assignment, so a request sees either the old table or the new one,
never a mix. Deployment health (cooldowns) is kept across reloads, keyed by deployment id.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError, RoutingConfig, load_config
from gateway.routing.deployments import EngineName, build_deployments
from gateway.routing.health import HealthBook
from gateway.routing.router import Router
from gateway.routing.types import Engine

log = logging.getLogger("gateway.runtime")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    applied: bool
    problems: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def _fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class RoutingTable:
    """Owns the current Router; ``router`` is what each request reads."""

    def __init__(self, config: RoutingConfig, engines: Mapping[EngineName, Engine], *,
                 source: Path | None, environ: Mapping[str, str] | None = None) -> None:
        self._engines = engines
        self._environ = environ
        self.source = source
        self.health = HealthBook(allowed_fails=config.router_settings.allowed_fails,
                                 cooldown_time=config.router_settings.cooldown_time)
        self.router = self._build(config)
        self.loaded_at = int(time.time())
        self._fingerprint = _fingerprint(source) if source else None

    def _build(self, config: RoutingConfig) -> Router:
        return Router(config, build_deployments(config), self._engines, self.health)

    def reload(self) -> ReloadResult:
        if self.source is None:
            return ReloadResult(False, ("the demo configuration has no file to reload",))
        fingerprint = _fingerprint(self.source)
        try:
            config = load_config(self.source, environ=os.environ if self._environ is None else self._environ)
        except ConfigError as error:
            log.error("routing file rejected, keeping the running configuration: %s", error)
            self._fingerprint = fingerprint
            return ReloadResult(False, tuple(error.problems))
        self.router = self._build(config)
        self.loaded_at = int(time.time())
        self._fingerprint = fingerprint
        aliases = tuple(self.router.aliases())
        log.info("routing file %s applied: %d aliases", self.source, len(aliases))
        return ReloadResult(True, aliases=aliases)

    def reload_if_changed(self) -> ReloadResult | None:
        if self.source is None:
            return None
        if _fingerprint(self.source) == self._fingerprint:
            return None
        return self.reload()
