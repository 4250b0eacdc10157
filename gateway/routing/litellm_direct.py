"""Non-streaming chat calls that use litellm's provider translation without ``litellm.acompletion``.

For an Anthropic call, ``acompletion`` spends about two thirds of its CPU on machinery the gateway
never reads: ``completion()``'s set-up on a thread-pool hop, provider and model-info look-ups, a
logging object, response-cost calculation and success logging (bench/engine_cost.py, methods 7 and
8; docs/routing-measurements.md). Here the engine calls the provider's litellm config itself
(``get_optional_params``, ``validate_environment``, ``transform_request``, ``transform_response``)
and sends the request on the gateway's pooled aiohttp session: the same translation, litellm's own.

Only what ``completion()`` does around the config is repeated here, per provider (:class:`ProviderGlue`),
and only for requests made of the plain features whose parity with ``acompletion`` is tested (upstream
request and response compared, tests/unit/test_litellm_direct.py). Everything else — streams, images
(litellm inlines remote media), unlisted fields, other providers — goes through ``acompletion``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson
from litellm.litellm_core_utils.exception_mapping_utils import exception_type
from litellm.litellm_core_utils.url_utils import ensure_api_route
from litellm.llms.anthropic.common_utils import AnthropicError
from litellm.llms.base_llm.chat.transformation import BaseLLMException
from litellm.types.utils import LlmProviders, ModelResponse
from litellm.utils import ProviderConfigManager, get_optional_params

from gateway.routing.deployments import Deployment
from gateway.routing.native import transport_error
from gateway.routing.types import UpstreamCall


@dataclass(frozen=True)
class ProviderGlue:
    """What litellm's ``completion()`` does for a provider around its config's translation."""

    default_base: str
    #: Where ``completion()`` finds the base URL when the deployment has none, in order.
    base_env: tuple[str, ...]
    #: The route ``completion()`` appends to the base URL when it is missing.
    route: str
    #: Set (to anything true), ``completion()`` leaves the base URL as given: such setups stay on it.
    no_route_env: str
    #: Where ``completion()`` finds the key when the deployment has none.
    key_env: str
    #: The provider's error type, which litellm's ``exception_type`` maps to its OpenAI-style errors.
    error: type[BaseLLMException]
    #: Set on the optional params by the provider's handler before translating.
    handler_params: Mapping[str, Any] = field(default_factory=dict)


GLUE: dict[str, ProviderGlue] = {
    "anthropic": ProviderGlue(
        default_base="https://api.anthropic.com", base_env=("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
        route="v1/messages", no_route_env="LITELLM_ANTHROPIC_DISABLE_URL_SUFFIX", key_env="ANTHROPIC_API_KEY",
        error=AnthropicError, handler_params={"is_vertex_request": False}),
}

#: Request fields whose translation is tested for parity with ``acompletion`` (``stream`` only as false:
#: ``handles`` sends streams to ``acompletion``; clients such as LangChain send ``"stream": false``).
PLAIN_FIELDS = frozenset({"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature",
                          "top_p", "stop", "tools", "tool_choice", "response_format"})
PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def _plain_content(content: Any) -> bool:
    if content is None or isinstance(content, str):
        return True
    return isinstance(content, list) and all(isinstance(part, dict) and part.get("type") == "text"
                                             for part in content)


def is_plain(body: Mapping[str, Any]) -> bool:
    """Text-only messages and only the fields in PLAIN_FIELDS."""
    messages = body.get("messages")
    return (body.keys() <= PLAIN_FIELDS and isinstance(messages, list)
            and all(isinstance(m, dict) and m.get("role") in PLAIN_ROLES and _plain_content(m.get("content"))
                    for m in messages))


class _NoLogging:
    """Stands in for litellm's logging object, which the configs report to; nothing listens here."""

    def post_call(self, *args: Any, **kwargs: Any) -> None:
        pass


class DirectTranslation:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        #: litellm may pick a config by model within a provider, so they are kept per both.
        self._configs: dict[tuple[str, str], Any] = {}

    @staticmethod
    def handles(deployment: Deployment, call: UpstreamCall) -> bool:
        glue = GLUE.get(deployment.provider)
        return (glue is not None and call.operation == "chat" and not call.stream
                and not os.environ.get(glue.no_route_env) and is_plain(call.body))

    def _config(self, provider: str, model: str) -> Any:
        config = self._configs.get((provider, model))
        if config is None:
            config = self._configs[provider, model] = ProviderConfigManager.get_provider_chat_config(
                model=model, provider=LlmProviders(provider))
        return config

    async def send(self, deployment: Deployment, call: UpstreamCall) -> ModelResponse:
        """litellm's exceptions on failure, as ``acompletion`` raises them (the engine translates them)."""
        provider, model = deployment.provider, deployment.upstream_model
        glue, config = GLUE[provider], self._config(provider, model)
        # The configs edit messages in place; the call's body is the client's and must stay as sent.
        messages = copy.deepcopy(call.body["messages"])
        params = {k: v for k, v in call.body.items() if k not in ("model", "messages", "stream")}
        optional = get_optional_params(model=model, custom_llm_provider=provider, messages=messages, **params)
        json_mode = bool(optional.pop("json_mode", False))
        translate_params = {**optional, **glue.handler_params}
        base = deployment.api_base or next((os.environ[n] for n in glue.base_env if os.environ.get(n)),
                                           glue.default_base)
        api_base = ensure_api_route(base, glue.route)
        api_key = (deployment.api_key.get_secret_value() if deployment.api_key else None) or os.environ.get(
            glue.key_env)
        litellm_params: dict[str, Any] = {}
        headers = config.validate_environment(
            api_key=api_key, headers={**(deployment.params.extra_headers or {}), **call.headers}, model=model,
            messages=messages, optional_params=translate_params, litellm_params=litellm_params, api_base=api_base)
        data = config.transform_request(model=model, messages=messages, optional_params=translate_params,
                                        litellm_params=litellm_params, headers=headers)
        timeout = aiohttp.ClientTimeout(total=deployment.timeout)
        try:
            async with self._session.post(api_base, data=orjson.dumps(data), headers=headers,
                                          timeout=timeout) as answer:
                raw = httpx.Response(answer.status, headers=list(answer.raw_headers),
                                     content=await answer.read(), request=httpx.Request("POST", api_base))
        except (TimeoutError, aiohttp.ClientError) as error:
            raise transport_error(error, deployment) from error
        if raw.status_code >= 400:
            failure = glue.error(status_code=raw.status_code, message=raw.text, headers=raw.headers)
            raise exception_type(  # type: ignore[no-untyped-call]  # litellm leaves it unannotated
                model=model, original_exception=failure, custom_llm_provider=provider)
        response: ModelResponse = config.transform_response(
            model=model, raw_response=raw, model_response=ModelResponse(), logging_obj=_NoLogging(),
            request_data=data, messages=messages, optional_params=optional, litellm_params=litellm_params,
            encoding=None, api_key=api_key, json_mode=json_mode)
        return response
