"""How long `import evograd` takes beyond `import numpy`, in fresh interpreters (target: at most 0.1 s more),
and whether it loaded torch or gymnasium (it must not). Median of several runs, interleaved.

Usage: python benchmarks/bench_import.py [--quick]. The last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import sys, time; t = time.perf_counter(); import numpy; a = time.perf_counter() - t; "
         "t = time.perf_counter(); import evograd; b = time.perf_counter() - t; "
         "print(a, b, 'torch' in sys.modules, 'gymnasium' in sys.modules)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    runs = 5 if ap.parse_args().quick else 15
    env = dict(os.environ, PYTHONPATH=ROOT)
    numpy_s, extra_s, torch_loaded, gym_loaded = [], [], False, False
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env,
                             cwd=ROOT).stdout.split()
        numpy_s.append(float(out[0]))
        extra_s.append(float(out[1]))
        torch_loaded |= out[2] == "True"
        gym_loaded |= out[3] == "True"
    res = {"numpy_s": statistics.median(numpy_s), "extra_s": statistics.median(extra_s),
           "evograd_s": statistics.median(numpy_s) + statistics.median(extra_s), "runs": runs,
           "torch_loaded": torch_loaded, "gymnasium_loaded": gym_loaded}
    print(f"import numpy {res['numpy_s'] * 1e3:.0f} ms; import evograd after it +{res['extra_s'] * 1e3:.0f} ms "
          f"(target <= +100 ms); torch loaded: {torch_loaded}, gymnasium loaded: {gym_loaded}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
