"""HTTP/REST frontend (KServe v2 + Triton extensions) as an ASGI app."""
