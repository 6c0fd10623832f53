"""Helpers shared by the test suite: ONNX model builders, repository builders, a server process."""
