"""The peers the comparison runs against, installed on first use into bench/.peers/ (gitignored).

* LiteLLM Proxy: `litellm[proxy]` at a pinned version in its own virtual environment (never 1.82.7 or
  1.82.8, the compromised releases), so its dependencies never touch the gateway's `.venv`. py-spy goes
  into the same environment: the profiler is a standalone binary, and the project's lock stays as it is.
* Portkey gateway: `@portkey-ai/gateway` from npm, with `@hono/node-server` held at 1.13.8 by an npm
  `overrides` entry: with the 1.19.x that a fresh install pulls, every streamed request fails
  (`TypeError: immutable`).

Each install is skipped when the marker file of the same pinned version is there, so a second run
costs nothing; a change of pin reinstalls.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
LITELLM_VERSION = "1.108.7"
PYSPY_VERSION = "0.4.1"
PORTKEY_VERSION = "1.15.2"
HONO_NODE_SERVER_VERSION = "1.13.8"
LITELLM_VENV = PEERS_DIR / "litellm-venv"
PORTKEY_DIR = PEERS_DIR / "portkey"
PORTKEY_SERVER = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"

_BAD_LITELLM = {"1.82.7", "1.82.8"}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _uv() -> list[str] | None:
    if path := shutil.which("uv"):
        return [path]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, check=False)
    return [sys.executable, "-m", "uv"] if probe.returncode == 0 else None


def install_litellm() -> Path:
    """LiteLLM Proxy's venv (and py-spy in it); returns its `bin/` directory."""
    assert LITELLM_VERSION not in _BAD_LITELLM, "a compromised litellm release"
    marker = LITELLM_VENV / f".installed-litellm-{LITELLM_VERSION}-py-spy-{PYSPY_VERSION}"
    bin_dir = LITELLM_VENV / "bin"
    if marker.exists():
        return bin_dir
    _log(f"installing litellm[proxy]=={LITELLM_VERSION} and py-spy=={PYSPY_VERSION} into {LITELLM_VENV} ...")
    packages = [f"litellm[proxy]=={LITELLM_VERSION}", f"py-spy=={PYSPY_VERSION}"]
    uv = _uv()
    if uv:
        subprocess.run([*uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(LITELLM_VENV)],
                       check=True)
        subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(bin_dir / "python"), *packages],
                       check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(bin_dir / "pip"), "install", "--quiet", *packages], check=True)
    marker.touch()
    return bin_dir


def install_portkey() -> Path:
    """The Portkey gateway's node_modules; returns the server script to run with node."""
    marker = PORTKEY_DIR / f".installed-{PORTKEY_VERSION}-hono-{HONO_NODE_SERVER_VERSION}"
    if marker.exists() and PORTKEY_SERVER.exists():
        return PORTKEY_SERVER
    if shutil.which("npm") is None:
        raise RuntimeError("npm is not installed (apt-get install -y nodejs npm)")
    _log(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} into {PORTKEY_DIR} ...")
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    package = {
        "name": "llm-gateway-bench-portkey",
        "private": True,
        "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION},
        "overrides": {"@hono/node-server": HONO_NODE_SERVER_VERSION},
    }
    (PORTKEY_DIR / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PORTKEY_DIR, check=True)
    marker.touch()
    return PORTKEY_SERVER


def py_spy() -> Path:
    return install_litellm() / "py-spy"


def node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    print(install_litellm())
    print(install_portkey())
