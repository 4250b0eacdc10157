"""Choosing a deployment for an alias and calling it through one of two engines."""
