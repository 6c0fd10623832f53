"""Python backend: Triton Python-backend models (model.py with TritonPythonModel), in-thread or isolated."""
