"""Backends: how a model file is loaded and executed (onnxruntime, ...)."""
