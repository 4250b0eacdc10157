"""llm-gateway: an OpenAI-compatible LLM gateway on litellm's provider layer."""

import os

__version__ = "0.1.0"

# litellm fetches its price map from the internet at import unless told otherwise; the gateway uses
# the copy bundled with the installed litellm so that start-up never waits on the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
