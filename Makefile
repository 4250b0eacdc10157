# The few verbs a newcomer needs. Every target installs what it needs first (uv, then the locked
# dependencies), so each one works on a fresh machine.
UV_VERSION := 0.13.8
PYTHON ?= python3
UV := $(PYTHON) -m uv
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install run test lint bench bench-compare clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen

run: install  ## the gateway on the demo: model 'demo' served by the built-in mock upstream
	$(UV) run --frozen llm-gateway serve

test: install  ## the whole test suite
	$(UV) run --frozen pytest $(PYTEST_ARGS)

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen mypy

bench: install  ## load, engine-cost and limiter benchmarks (wrk from Debian)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(UV) run --frozen python bench/load.py
	$(UV) run --frozen python bench/engine_cost.py
	$(UV) run --frozen python bench/limiter.py

bench-compare: install  ## the gateway vs LiteLLM Proxy, Portkey and a bare forwarder (peers go to bench/.peers/)
	@command -v wrk >/dev/null && command -v nginx >/dev/null && test -f /usr/lib/nginx/modules/ngx_http_echo_module.so \
		|| (apt-get update -qq && apt-get install -y -qq wrk nginx-light libnginx-mod-http-echo)
	$(UV) run --frozen python bench/compare.py $(BENCH_ARGS)

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .gateway-data
