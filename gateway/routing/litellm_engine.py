"""The litellm engine: every provider that needs translation goes through litellm's call path.

litellm does the request and response translation and raises its own exception types; this module
turns those into our error tree in one place (``translate_litellm_errors``) and renders litellm's
response objects as OpenAI JSON, so a client cannot tell which engine answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import aiohttp
import litellm
import orjson
from litellm import exceptions as provider_errors

from gateway.errors import (
    ContextWindowExceeded,
    GatewayError,
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejectedRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_from_upstream_status,
)
from gateway.routing.deployments import Deployment
from gateway.routing.litellm_direct import DirectTranslation
from gateway.routing.openai_shape import openai_shape
from gateway.routing.relay import FrameRelay
from gateway.routing.sse import parse_retry_after, scrub
from gateway.routing.types import DONE_FRAME, UpstreamCall, UpstreamResponse, Usage, finish_reasons

#: Fields litellm wants as arguments of its own rather than in the provider's body.
_CLIENT_ONLY = frozenset({"model", "stream", "stream_options"})

#: A per-call "custom price" handed to litellm for chat and text completions. litellm prices every
#: response for its own logging (``_hidden_params["response_cost"]``), which the gateway never reads:
#: spend is priced by ``gateway.spend`` from ``litellm.model_cost``, and ``openai_shape`` drops the
#: hidden params. For a model missing from litellm's price map (most self-hosted or renamed
#: deployments) that pricing walks the model map's generalisation rules several times per call and
#: then, on a zero cost, runs a "zero cost diagnostic" that walks them again: about a third of the
#: CPU of an Anthropic-translated call (6.6 -> 4.6 ms per call, 29.6 -> 20.5 ms per 20-chunk stream,
#: measured with litellm 1.110.2). A custom price skips the map look-ups, and a non-zero one skips
#: the diagnostic. It is per call: litellm registers nothing in ``litellm.model_cost`` for it.
_NOMINAL_COST_PER_TOKEN = 1e-18
_PRICED_OPERATIONS = frozenset({"chat", "completion"})

def _retry_after(error: Exception) -> float | None:
    headers = getattr(error, "litellm_response_headers", None)
    if headers is None:
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None)
    try:
        return parse_retry_after(headers) if headers is not None else None
    except (AttributeError, TypeError):
        return None


@contextmanager
def translate_litellm_errors(deployment: Deployment) -> Iterator[None]:
    """Re-raise litellm's exceptions as our errors, by type (never by message text)."""
    try:
        yield
    except GatewayError:
        raise
    except provider_errors.ContextWindowExceededError as error:
        raise ContextWindowExceeded(scrub(str(error.message), deployment), param="messages") from error
    except provider_errors.RateLimitError as error:
        raise UpstreamRateLimited(scrub(str(error.message), deployment),
                                  retry_after=_retry_after(error)) from error
    except (provider_errors.AuthenticationError, provider_errors.PermissionDeniedError) as error:
        raise UpstreamAuthFailed("the upstream provider rejected the gateway's credentials") from error
    except provider_errors.Timeout as error:
        raise UpstreamTimeout(f"deployment {deployment.describe()} timed out") from error
    except (provider_errors.BadRequestError, provider_errors.UnprocessableEntityError) as error:
        raise UpstreamRejectedRequest(scrub(str(error.message), deployment)) from error
    except provider_errors.MidStreamFallbackError as error:
        raise UpstreamBadResponse(
            f"deployment {deployment.describe()} failed in the middle of the stream") from error
    except provider_errors.ServiceUnavailableError as error:
        raise UpstreamUnavailable(scrub(str(error.message), deployment),
                                  retry_after=_retry_after(error)) from error
    except provider_errors.APIConnectionError as error:
        raise UpstreamUnavailable(f"cannot reach deployment {deployment.describe()}") from error
    except (provider_errors.NotFoundError, provider_errors.InternalServerError, provider_errors.APIError,
            provider_errors.BadGatewayError) as error:
        status = getattr(error, "status_code", 502)
        raise error_from_upstream_status(
            status if isinstance(status, int) else 502, scrub(str(error.message), deployment),
            retry_after=_retry_after(error),
        ) from error
    except TimeoutError as error:
        raise UpstreamTimeout(f"deployment {deployment.describe()} timed out") from error
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as error:
        raise UpstreamBadResponse(
            f"deployment {deployment.describe()} sent a response litellm could not read") from error


def _secret(value: Any) -> Any:
    return value.get_secret_value() if value is not None and hasattr(value, "get_secret_value") else value


def _call_kwargs(deployment: Deployment, call: UpstreamCall) -> dict[str, Any]:
    params = deployment.params
    kwargs: dict[str, Any] = {k: v for k, v in call.body.items() if k not in _CLIENT_ONLY}
    kwargs.update(
        model=deployment.litellm_model,
        timeout=deployment.stream_timeout if call.stream else deployment.timeout,
        num_retries=0,
        max_retries=0,
    )
    optional = {
        "api_base": deployment.api_base,
        "api_key": _secret(deployment.api_key),
        "api_version": params.api_version,
        "organization": params.organization,
        "extra_headers": {**(params.extra_headers or {}), **call.headers} or None,
        "aws_access_key_id": _secret(params.aws_access_key_id),
        "aws_secret_access_key": _secret(params.aws_secret_access_key),
        "aws_session_token": _secret(params.aws_session_token),
        "aws_region_name": params.aws_region_name,
        "vertex_project": params.vertex_project,
        "vertex_location": params.vertex_location,
        "vertex_credentials": _secret(params.vertex_credentials),
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if call.operation in _PRICED_OPERATIONS:
        kwargs["input_cost_per_token"] = _NOMINAL_COST_PER_TOKEN
        kwargs["output_cost_per_token"] = _NOMINAL_COST_PER_TOKEN
    if call.stream:
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
    return kwargs


def _dump(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = openai_shape(obj.model_dump(mode="json", exclude_none=False))
    return data


class LitellmEngine:
    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        """With ``session``, plain non-streaming chat to the providers in ``litellm_direct.GLUE`` skips
        ``acompletion`` (gateway/routing/litellm_direct.py); without, every call goes through it."""
        # Process-wide and idempotent: stops litellm printing help banners (its provider list) to
        # stdout from inside its cost and provider look-ups; errors still reach us as exceptions.
        litellm.suppress_debug_info = True
        self._direct = DirectTranslation(session) if session is not None else None

    async def _invoke(self, call: UpstreamCall, kwargs: dict[str, Any]) -> Any:
        if call.operation == "chat":
            return await litellm.acompletion(**kwargs)
        if call.operation == "completion":
            return await litellm.atext_completion(**kwargs)
        return await litellm.aembedding(**kwargs)

    async def send(self, deployment: Deployment, call: UpstreamCall) -> UpstreamResponse:
        with translate_litellm_errors(deployment):
            if self._direct is not None and self._direct.handles(deployment, call):
                response = await self._direct.send(deployment, call)
            else:
                response = await self._invoke(call, _call_kwargs(deployment, call))
            data = _dump(response)
        response_id = data.get("id")
        return UpstreamResponse(orjson.dumps(data), Usage.from_openai(data.get("usage")), data.get("model"),
                                response_id if isinstance(response_id, str) else None,
                                finish_reasons(data.get("choices")))

    async def open_stream(self, deployment: Deployment, call: UpstreamCall) -> LitellmStream:
        kwargs = _call_kwargs(deployment, call)
        with translate_litellm_errors(deployment):
            response = await self._invoke(call, kwargs)
        stream = LitellmStream(response, deployment, call.client_wants_usage)
        await stream.prime()
        return stream


class LitellmStream(FrameRelay):
    """Renders litellm's stream chunks as OpenAI SSE frames (see ``UpstreamStream``)."""

    def __init__(self, response: Any, deployment: Deployment, client_wants_usage: bool) -> None:
        super().__init__()
        self._iterator = response.__aiter__()
        self._response = response
        self._deployment = deployment
        self._client_wants_usage = client_wants_usage
        self._saw_finish = False

    def _frame(self, chunk: Any) -> bytes | None:
        data = _dump(chunk)
        if self.response_model is None:
            self.response_model = data.get("model")
            self.response_id = data.get("id")
        reasons = finish_reasons(data.get("choices"))
        if reasons:
            self._saw_finish = True
            self.finish_reasons.extend(reasons)
        usage = data.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        if usage and not data.get("choices"):  # the final usage chunk
            if not self._client_wants_usage:
                return None
        else:
            data.pop("usage", None)
        frame = b"data: " + orjson.dumps(data) + b"\n\n"
        self._observe(data, len(frame))
        return frame

    async def _read(self) -> tuple[bytes, int]:
        """One event per read: litellm hands over its chunks one at a time."""
        while True:
            with translate_litellm_errors(self._deployment):
                try:
                    chunk = await self._iterator.__anext__()
                except StopAsyncIteration:
                    if not self._saw_finish:
                        # litellm ends quietly when a provider cuts the stream; a stream with no
                        # finish_reason did not finish.
                        raise UpstreamBadResponse(
                            f"deployment {self._deployment.describe()} ended the stream early") from None
                    return DONE_FRAME, 1
            frame = self._frame(chunk)
            if frame is not None:
                return frame, 1

    async def aclose(self) -> None:
        closer = getattr(self._iterator, "aclose", None) or getattr(self._response, "aclose", None)
        if closer is not None:
            with suppress(UpstreamError, RuntimeError, provider_errors.APIError):
                await closer()
