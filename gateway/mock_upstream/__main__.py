"""``python -m gateway.mock_upstream --host 127.0.0.1 --port 9000``."""

from __future__ import annotations

import argparse

from gateway.mock_upstream.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.mock_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    args = parser.parse_args(argv)
    run(args.host, args.port)


if __name__ == "__main__":
    main()
