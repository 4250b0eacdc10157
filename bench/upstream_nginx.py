"""The comparison's mock upstream: nginx answering canned OpenAI and Anthropic bodies, one route each.

nginx costs a fraction of what any target costs per request, so the mock stays far from being the
bottleneck on its shared core. It cannot read the request, so what it answers is chosen by path:

| path | answer |
|---|---|
| `/v1/chat/completions` | an OpenAI chat completion (JSON, with usage) |
| `/stream/v1/chat/completions` | an OpenAI SSE stream: 20 content chunks, a usage chunk, `[DONE]` |
| `/slow/v1/chat/completions` | the JSON above after 500 ms (`echo_sleep`, Debian's libnginx-mod-http-echo) |
| `/v1/messages` | an Anthropic Messages reply (JSON, with usage) |
| `/health` | `ok` |

A target is pointed at a scenario by its base URL (`http://127.0.0.1:PORT/stream/v1`, …).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from children import Children

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
STREAM_CHUNKS = 20
SLOW_MS = 500
MODEL = "gpt-4o-mini"
#: A name both our litellm and LiteLLM Proxy 1.108.7 find in their price maps (issue #7: unknown names
#: make litellm walk its model-map generalisation rules on every call, in both).
ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"
REPLY = "Hello from the benchmark mock upstream."

_CREATED = 1_700_000_000


def chat_json() -> str:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": _CREATED, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22},
        "system_fingerprint": "fp_bench",
    }, separators=(",", ":"))


def chat_sse_events() -> list[str]:
    def event(choices: list[object], usage: object = None) -> str:
        chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": _CREATED, "model": MODEL,
                 "system_fingerprint": "fp_bench", "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"

    events = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    events += [event([{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}])
               for i in range(STREAM_CHUNKS)]
    events.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(event([], {"prompt_tokens": 14, "completion_tokens": STREAM_CHUNKS, "total_tokens": 34}))
    events.append("data: [DONE]\n\n")
    return events


def anthropic_json() -> str:
    return json.dumps({
        "id": "msg_bench", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
        "content": [{"type": "text", "text": REPLY}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 14, "output_tokens": 8},
    }, separators=(",", ":"))


def _quoted(body: str) -> str:
    # Single-quoted nginx strings: the bodies hold no single quote, backslash or `$` (a variable).
    assert not set(body) & {"'", "\\", "$"}, "a canned body would need escaping"
    return f"'{body}'"


def config(port: int, work_dir: Path) -> str:
    temp = work_dir / "nginx-temp"
    temp.mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join(f"    {name}_temp_path {temp / name};"
                           for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    stream = "\n".join(f"            echo -n {_quoted(event)};" for event in chat_sse_events())
    return f"""\
load_module {ECHO_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid {work_dir / "nginx.pid"};
error_log {work_dir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
{temp_paths}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /health {{ default_type text/plain; return 200 'ok'; }}
        location = /v1/chat/completions {{ default_type application/json; return 200 {_quoted(chat_json())}; }}
        location = /stream/v1/chat/completions {{
            # One `echo` per event (nginx caps one config token at 4 KB); sent chunked, as OpenAI does.
            default_type text/event-stream;
            echo_read_request_body;
{stream}
        }}
        location = /slow/v1/chat/completions {{
            default_type application/json;
            echo_read_request_body;
            echo_sleep {SLOW_MS / 1000:g};
            echo {_quoted(chat_json())};
        }}
        location = /v1/messages {{ default_type application/json; return 200 {_quoted(anthropic_json())}; }}
        location / {{ default_type application/json; return 404 '{{"error":{{"message":"no such route"}}}}'; }}
    }}
}}
"""


def missing() -> list[str]:
    """The Debian packages this mock needs that are not installed."""
    gone = [] if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else ["nginx-light"]
    return gone + ([] if ECHO_MODULE.exists() else ["libnginx-mod-http-echo"])


def start(children: Children, port: int, cpu: int, work_dir: Path, timeout_s: float = 15.0) -> int:
    """Start nginx on `port` pinned to `cpu`; return its pid once /health answers."""
    conf = work_dir / "nginx.conf"
    conf.write_text(config(port, work_dir))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    pid = children.start("nginx", [nginx, "-p", str(work_dir), "-c", str(conf)], cpu)
    children.wait_ready("nginx", pid, f"http://127.0.0.1:{port}/health", timeout_s)
    return pid
