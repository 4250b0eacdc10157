"""``llm-gateway cache purge``: remove cached responses through a running gateway's admin API.

Same conventions as ``llm-gateway keys``: the master key comes from an environment variable, never
the command line; exit 0 done, 1 the gateway refused or could not be reached, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from gateway.cli_keys import DEFAULT_KEY_ENV, DEFAULT_URL, AdminClient, ApiError, UsageError, format_table


def _purge(args: argparse.Namespace) -> int:
    secret = os.environ.get(args.key_env, "").strip()
    try:
        if not secret:
            raise UsageError(f"set {args.key_env} to the master key (or name another variable with --key-env)")
        params = {name: value for name, value in (("key_id", args.key), ("team", args.team), ("alias", args.alias))
                  if value is not None}
        with AdminClient(args.url, secret) as admin:
            result = admin.call("DELETE", "/admin/cache", params=params)
    except (UsageError, ApiError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(("TIER", "PURGED"), [("exact", result["exact"]), ("semantic", result["semantic"])]))
    return 0


def add_cache_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = commands.add_parser("cache", help="manage the response cache on a running gateway (admin API)",
                                description=__doc__.splitlines()[0])
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    purge = actions.add_parser("purge", help="purge cached responses matching every filter given (none: all)",
                               description="Purge cached responses matching every filter given; with no filter, "
                                           "everything. Needs the master key.")
    purge.add_argument("--key", metavar="ID", help="only entries written by this key id (key_…)")
    purge.add_argument("--team", help="only entries of this team")
    purge.add_argument("--alias", help="only entries of this model alias")
    purge.add_argument("--url", default=os.environ.get("GATEWAY_URL", DEFAULT_URL),
                       help=f"the gateway (GATEWAY_URL, default {DEFAULT_URL})")
    purge.add_argument("--key-env", default=DEFAULT_KEY_ENV, metavar="NAME",
                       help=f"environment variable holding the master key (default {DEFAULT_KEY_ENV})")
    purge.add_argument("--json", action="store_true", help="print the gateway's JSON instead of a table")
    purge.set_defaults(handler=_purge)
