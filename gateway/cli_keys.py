"""``llm-gateway keys …``: manage virtual keys through a running gateway's admin API.

A plain HTTP client (httpx, sync) with no gateway internals: it must start in well under a second,
so nothing here imports litellm, fastapi or pydantic. The admin secret is read from an environment
variable, never from the command line, where it would land in shell history and ``ps`` output.
Exit codes: 0 done, 1 the gateway refused or could not be reached, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:4000"
DEFAULT_KEY_ENV = "GATEWAY_MASTER_KEY"
#: ``--rpm none`` etc. in ``update``: clear the field (send JSON null).
CLEAR = "none"
BUDGET_PERIODS = ("daily", "weekly", "monthly", "total")
ONCE_WARNING = "warning: this is the only time the secret is shown; store it now."

Json = dict[str, Any]


class UsageError(Exception):
    """Exit 2: the command line or the environment is wrong; nothing was sent."""


class ApiError(Exception):
    """Exit 1: the gateway answered with an error, or could not be reached."""


class AdminClient:
    """The admin API over one httpx connection pool; every error becomes an ``ApiError``."""

    def __init__(self, url: str, secret: str) -> None:
        import httpx

        self.url = url.rstrip("/")
        try:
            self._http = httpx.Client(base_url=self.url, timeout=30,
                                      headers={"authorization": f"Bearer {secret}"})
        except httpx.InvalidURL as error:
            raise UsageError(f"--url {url!r} is not a usable URL: {error}") from None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, params: Json | None = None, body: Json | None = None) -> Json:
        import httpx

        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx.ConnectError as error:
            raise ApiError(f"cannot reach the gateway at {self.url} ({error}); is it running? "
                           "Set --url or GATEWAY_URL") from None
        except httpx.HTTPError as error:
            raise ApiError(f"request to {self.url}{path} failed: {error}") from None
        if response.is_error:
            raise ApiError(_error_message(response))
        try:
            result: Json = response.json()
        except ValueError:
            raise ApiError(f"{self.url}{path} answered without JSON; is --url a gateway?") from None
        return result

    def pages(self, path: str, params: Json, *, follow: bool) -> Iterator[Json]:
        """One page, or every page when ``follow``, passing each ``next_cursor`` back."""
        while True:
            page = self.call("GET", path, params=params)
            yield page
            cursor = page.get("next_cursor")
            if not (follow and cursor):
                return
            params = {**params, "cursor": cursor}


def _error_message(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()[:500] or response.reason_phrase
    return f"{message} (HTTP {response.status_code})"


# --- argument types -----------------------------------------------------------------------------

def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _amount(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _period(text: str) -> str:
    if text not in BUDGET_PERIODS:
        raise argparse.ArgumentTypeError(f"not one of {', '.join(BUDGET_PERIODS)}: {text!r}")
    return text


def _timestamp(text: str) -> str:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time (e.g. 2030-01-31T00:00:00Z): {text!r}") from None
    return text


def _json_object(text: str) -> Json:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"owner\": \"search-team\"}'")
    return value


def _clearable(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """In ``update``, the word ``none`` clears a field; anything else is converted as usual."""

    def parse(text: str) -> Any:
        return _Clear if text.lower() == CLEAR else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


class _Clear:
    """Marker for an explicit null (``--rpm none``)."""


# --- the request body from the options ----------------------------------------------------------

#: Options named like the API field they set.
_SIMPLE_FIELDS = ("alias", "team", "role", "rpm", "tpm", "max_parallel", "budget_usd", "budget_period", "expires_at",
                  "metadata", "model_limits")


def _body(args: argparse.Namespace) -> Json:
    """Only the fields given on the command line: ``update`` must not reset what it was not told."""
    body: Json = {}
    for field in _SIMPLE_FIELDS:
        value = getattr(args, field)
        if value is not None:
            body[field] = None if value is _Clear else value
    if args.models is not None:
        body["allowed_models"] = args.models
    if getattr(args, "all_models", False):
        body["allowed_models"] = []
    if args.enabled is not None:
        body["enabled"] = args.enabled
    return body


# --- output -------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    cells = [list(headers), *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def _status(key: Json) -> str:
    if key.get("revoked_at"):
        return "revoked"
    if not key.get("enabled", True):
        return "disabled"
    expires = key.get("expires_at")
    if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
        return "expired"
    return "active"


_KEY_COLUMNS = ("ID", "ALIAS", "TEAM", "ROLE", "STATUS", "MODELS", "RPM", "TPM", "PARALLEL", "BUDGET_USD",
                "EXPIRES_AT", "PREFIX")


def _key_row(key: Json) -> list[Any]:
    return [key["id"], key.get("alias"), key.get("team"), key.get("role"), _status(key), key.get("allowed_models"),
            key.get("rpm"), key.get("tpm"), key.get("max_parallel"), _budget(key), key.get("expires_at"),
            key.get("key_prefix")]


def _budget(key: Json) -> str | None:
    if key.get("budget_usd") is None:
        return None
    period = key.get("budget_period")
    return f"{key['budget_usd']}/{period}" if period else str(key["budget_usd"])


def _key_details(key: Json) -> str:
    first = ("id", "key_prefix")
    rows = [(name, key.get(name)) for name in first] + [("status", _status(key))]
    rows += [(name, value) for name, value in key.items() if name not in (*first, "key")]
    return format_table(("FIELD", "VALUE"), rows)


def _emit(args: argparse.Namespace, payload: Json, human: Callable[[Json], str]) -> int:
    print(json.dumps(payload, indent=2, ensure_ascii=False) if args.json else human(payload))
    return 0


def _with_secret(created: Json) -> str:
    return f"{_key_details(created)}\n\nsecret  {created['key']}"


# --- actions ------------------------------------------------------------------------------------

def _create(admin: AdminClient, args: argparse.Namespace) -> int:
    created = admin.call("POST", "/admin/keys", body=_body(args))
    print(ONCE_WARNING, file=sys.stderr)
    return _emit(args, created, _with_secret)


def _list(admin: AdminClient, args: argparse.Namespace) -> int:
    params = {name: value for name, value in (("team", args.team), ("alias", args.alias), ("limit", args.limit),
                                              ("cursor", args.cursor)) if value is not None}
    pages = list(admin.pages("/admin/keys", params, follow=args.all))
    keys = [key for page in pages for key in page["data"]]
    result = {"data": keys, "next_cursor": pages[-1].get("next_cursor")}
    if result["next_cursor"] and not args.json:
        print(f"more keys: pass --all, or --cursor {result['next_cursor']}", file=sys.stderr)
    return _emit(args, result, lambda r: format_table(_KEY_COLUMNS, [_key_row(k) for k in r["data"]]))


def _show(admin: AdminClient, args: argparse.Namespace) -> int:
    return _emit(args, admin.call("GET", f"/admin/keys/{args.id}"), _key_details)


def _update(admin: AdminClient, args: argparse.Namespace) -> int:
    body = _body(args)
    if not body:
        raise UsageError("nothing to change: give at least one option (see 'keys update --help')")
    return _emit(args, admin.call("PATCH", f"/admin/keys/{args.id}", body=body), _key_details)


def _revoke(admin: AdminClient, args: argparse.Namespace) -> int:
    revoked = admin.call("DELETE", f"/admin/keys/{args.id}")
    return _emit(args, revoked, lambda k: f"revoked {k['id']} at {k['revoked_at']}")


def _rotate(admin: AdminClient, args: argparse.Namespace) -> int:
    rotated = admin.call("POST", f"/admin/keys/{args.id}/rotate", body={"grace_seconds": args.grace_seconds})
    print(ONCE_WARNING, file=sys.stderr)
    return _emit(args, rotated, _with_secret)


def _usage_text(usage: Json) -> str:
    summary = format_table(("FIELD", "VALUE"), [(name, usage.get(name)) for name in (
        "key_id", "budget_usd", "budget_period", "spent_usd", "remaining_usd", "period_resets_at")])
    if not usage["rows"]:
        return f"{summary}\n\nno usage recorded"
    columns = ("DAY", "MODEL", "REQUESTS", "INPUT_TOKENS", "OUTPUT_TOKENS", "COST_USD")
    rows = [[row.get(c.lower()) for c in columns] for row in usage["rows"]]
    return f"{summary}\n\n{format_table(columns, rows)}"


def _usage(admin: AdminClient, args: argparse.Namespace) -> int:
    return _emit(args, admin.call("GET", f"/admin/keys/{args.id}/usage"), _usage_text)


def _audit(admin: AdminClient, args: argparse.Namespace) -> int:
    params = {name: value for name, value in (("key_id", args.key_id), ("limit", args.limit),
                                              ("cursor", args.cursor)) if value is not None}
    pages = list(admin.pages("/admin/audit", params, follow=args.all))
    result = {"data": [entry for page in pages for entry in page["data"]], "next_cursor": pages[-1].get("next_cursor")}
    columns = ("AT", "ACTION", "KEY", "TEAM", "ACTOR", "CHANGES")
    return _emit(args, result, lambda r: format_table(columns, [
        [e["at"], e["action"], e.get("key_id"), e.get("team"), e["actor"], e.get("changes")] for e in r["data"]]))


# --- wiring -------------------------------------------------------------------------------------

Action = Callable[[AdminClient, argparse.Namespace], int]


def _secret(args: argparse.Namespace) -> str:
    secret = os.environ.get(args.key_env, "").strip()
    if not secret:
        raise UsageError(f"set {args.key_env} to the master key or an admin key "
                         "(or name another variable with --key-env); secrets are never taken as arguments")
    return secret


def _runner(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with AdminClient(args.url, _secret(args)) as admin:
                return action(admin, args)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except ApiError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    return run


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("GATEWAY_URL", DEFAULT_URL),
                        help=f"the gateway (GATEWAY_URL, default {DEFAULT_URL})")
    common.add_argument("--key-env", default=DEFAULT_KEY_ENV, metavar="NAME",
                        help=f"environment variable holding the master or an admin key (default {DEFAULT_KEY_ENV})")
    common.add_argument("--json", action="store_true", help="print the gateway's JSON instead of a table")
    return common


def _add_fields(parser: argparse.ArgumentParser, *, update: bool) -> None:
    wrap = _clearable if update else (lambda convert: convert)
    clear = f" ('{CLEAR}' clears it)" if update else ""
    parser.add_argument("--alias", type=wrap(str), help="a name for people" + clear)
    parser.add_argument("--team", type=wrap(str), help="the owning team" + clear)
    parser.add_argument("--role", choices=("user", "admin"), help="admin keys may manage their team's keys")
    parser.add_argument("--model", dest="models", action="append", metavar="ALIAS",
                        help="a model alias this key may use (repeatable; none given: every alias)")
    if update:
        parser.add_argument("--all-models", action="store_true", help="allow every model alias again")
    parser.add_argument("--rpm", type=wrap(_integer), help="requests per minute" + clear)
    parser.add_argument("--tpm", type=wrap(_integer), help="tokens per minute" + clear)
    parser.add_argument("--max-parallel", type=wrap(_integer), help="requests in flight" + clear)
    parser.add_argument("--budget-usd", type=wrap(_amount), help="spend limit per budget period" + clear)
    parser.add_argument("--budget-period", type=wrap(_period), metavar="{" + ",".join(BUDGET_PERIODS) + "}",
                        help="the budget's period" + clear)
    parser.add_argument("--expires-at", type=wrap(_timestamp), metavar="TIME",
                        help="ISO 8601 expiry, e.g. 2030-01-31T00:00:00Z" + clear)
    parser.add_argument("--metadata", type=_json_object, metavar="JSON", help="a JSON object kept with the key")
    parser.add_argument("--model-limits", type=_json_object, metavar="JSON",
                        help='per-alias limits, e.g. \'{"gpt-4o": {"rpm": 10, "tpm": 20000}}\'')
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--disabled", dest="enabled", action="store_false", default=None, help="refuse this key")
    state.add_argument("--enabled", dest="enabled", action="store_true", default=None, help="accept this key")


def _add_paging(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--limit", type=_integer, help=f"{what} per page (server default 50, at most 500)")
    parser.add_argument("--cursor", help="start after this cursor (from a previous page)")
    parser.add_argument("--all", action="store_true", help="follow next_cursor to the last page")


def add_keys_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``keys`` and its actions on the top-level subparsers of ``llm-gateway``."""
    keys = commands.add_parser("keys", help="manage virtual keys on a running gateway (admin API)",
                               description=__doc__.splitlines()[0])
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = _common()

    def action(name: str, run: Action, help_text: str, *, key_id: bool = False) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, parents=[common], help=help_text,
                                                             description=help_text)
        if key_id:
            parser.add_argument("id", help="the key's id (key_…)")
        parser.set_defaults(handler=_runner(run))
        return parser

    _add_fields(action("create", _create, "create a key and print its secret (shown once)"), update=False)
    listing = action("list", _list, "list keys, oldest first")
    listing.add_argument("--team", help="only this team's keys")
    listing.add_argument("--alias", help="only keys with this alias")
    _add_paging(listing, "keys")
    action("show", _show, "show one key", key_id=True)
    _add_fields(action("update", _update, "change the given fields of a key", key_id=True), update=True)
    action("revoke", _revoke, "revoke a key for good", key_id=True)
    rotate = action("rotate", _rotate, "issue a new secret for a key (printed once)", key_id=True)
    rotate.add_argument("--grace-seconds", type=_integer, default=0,
                        help="how long the old secret keeps working (default 0, at most 604800)")
    action("usage", _usage, "requests, tokens and spend of a key", key_id=True)
    audit = action("audit", _audit, "who changed which key, newest first")
    audit.add_argument("--key-id", help="only entries about this key")
    _add_paging(audit, "entries")
