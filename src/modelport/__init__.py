"""modelport: a Triton-compatible model inference server in Python."""

__version__ = "0.1.0"

__all__ = ["__version__"]
