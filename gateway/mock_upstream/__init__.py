"""A real HTTP server speaking OpenAI's and Anthropic's wire formats, steered by the model name.

Used by demo mode, the end-to-end tests and the benchmarks. Imports only the standard library,
aiohttp and orjson, so it starts fast. See ``behaviour.py`` for the directive grammar and
``server.py`` for ``create_app``/``start``/``run``.
"""
