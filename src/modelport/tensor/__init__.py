"""Tensors as the server sees them: datatypes, BYTES encoding, request and response records."""
