"""Wire formats <-> InferRequest/InferResponse: pure functions, no server state."""

# Requests whose tensor data reach this size are decoded on a worker thread, off the event loop
# (millions of BYTES elements take a while); smaller ones are decoded in place.
DECODE_OFF_LOOP_BYTES = 1 << 20
