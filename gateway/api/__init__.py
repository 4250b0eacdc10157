"""HTTP surface: thin handlers that parse, call the pipeline and render."""
