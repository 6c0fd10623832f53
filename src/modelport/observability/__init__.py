"""Observability: logging now; metrics, statistics and tracing as they land."""
