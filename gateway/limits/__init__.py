"""Rate limits, concurrency and budgets per key, decided atomically in one store call."""
