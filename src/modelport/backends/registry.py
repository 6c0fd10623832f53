"""Backend name -> Backend; the built-in backends are registered here."""

from __future__ import annotations

from modelport.backends.base import Backend
from modelport.errors import InvalidInput


class BackendRegistry:
    """The backends this server can run, by config `backend` name."""

    def __init__(self) -> None:
        self._backends: dict[str, Backend] = {}

    def register(self, backend: Backend) -> None:
        self._backends[backend.name] = backend

    def get(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is None:
            raise InvalidInput(
                f"unable to find backend '{name}'; this server provides: {', '.join(sorted(self._backends))}"
            )
        return backend

    @classmethod
    def with_builtins(cls) -> BackendRegistry:
        from modelport.backends.onnxruntime.backend import OnnxRuntimeBackend

        registry = cls()
        registry.register(OnnxRuntimeBackend())
        return registry
