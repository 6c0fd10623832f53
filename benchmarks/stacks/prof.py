"""Profile a floor server's main thread with cProfile while perf_analyzer loads it.

  python prof.py SERVER.py PORT [server args...]   # stop with SIGINT; prints top functions

Only the main thread (the event loop) is profiled: for grpc servers the C-core
work done in grpc's own threads is invisible here, see bench.py's CPU numbers.
"""
import cProfile
import io
import os
import pstats
import runpy
import signal
import sys

# background jobs of a non-interactive shell start with SIGINT ignored: restore it,
# and treat SIGTERM the same way
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.default_int_handler)

script = os.path.abspath(sys.argv[1])
sys.argv = [script] + sys.argv[2:]
sys.path.insert(0, os.path.dirname(script))
prof = cProfile.Profile()
try:
    prof.runcall(runpy.run_path, script, run_name="__main__")
except KeyboardInterrupt:
    pass
s = io.StringIO()
pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
print(s.getvalue())
