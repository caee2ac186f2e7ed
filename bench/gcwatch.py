"""`python bench/gcwatch.py run.py ARGS…`: run the server with a log line for every long garbage-collector pass.

Used by `bench/run.py --gc-log` to tell whether an event-loop stall was the cyclic GC walking a
big heap. It only adds a gc callback; the server itself is unchanged.
"""

import gc
import runpy
import sys
import time
from pathlib import Path

REPORT_S = 0.02  # passes shorter than this are not worth a line
_started = 0.0


def _timer(phase: str, info: dict) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
        return
    pause = time.perf_counter() - _started
    if pause >= REPORT_S:
        print(f"GC pause {time.time():.3f} generation {info['generation']} {pause * 1000:.1f} ms",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    script = Path(sys.argv[1]).resolve()
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(script.parent))
    gc.callbacks.append(_timer)
    runpy.run_path(str(script), run_name="__main__")
