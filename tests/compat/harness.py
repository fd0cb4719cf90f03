"""The compatibility scripts' shared check counter: `check(name, cond, detail)` prints `ok` or
`FAIL` and counts into `RESULTS`, which each script reports as "N passed, M failed". The waiting
helpers come from the test suites' shared `tests/pylib/faramesh_testd.py`."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from faramesh_testd import free_port, wait_port, wait_socket  # noqa: E402,F401  (re-exported)

RESULTS = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        RESULTS["passed"] += 1
        print(f"ok   {name}")
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name} {detail}")
