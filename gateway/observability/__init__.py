"""What the gateway tells operators: metrics (and, with issue #6, traces and structured logs)."""
