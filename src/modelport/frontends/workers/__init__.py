"""Frontend workers (`--frontend-workers N`): processes on the public ports, handing requests to the engine.

engine.py is the engine's side (link server, private gRPC server, supervisor); worker.py is the
worker process, started as `python -m modelport.frontends.workers.worker` (so it is not imported here).
"""
