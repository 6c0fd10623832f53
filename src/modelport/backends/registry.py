"""Backend name -> Backend; the built-in backends are registered here."""

from __future__ import annotations

from modelport.backends.base import Backend
from modelport.backends.caller import InferenceCaller
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
    def with_builtins(cls, caller: InferenceCaller | None = None) -> BackendRegistry:
        """The built-in backends; `caller` lets Python models call other models (BLS)."""
        from modelport.backends.onnxruntime.backend import OnnxRuntimeBackend
        from modelport.backends.python.backend import PythonBackend
        from modelport.backends.pytorch.backend import PyTorchBackend

        registry = cls()
        registry.register(OnnxRuntimeBackend())
        registry.register(PythonBackend(caller))
        registry.register(PyTorchBackend())
        return registry
