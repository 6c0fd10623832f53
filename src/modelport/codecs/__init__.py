"""Wire formats <-> InferRequest/InferResponse: pure functions, no server state."""
