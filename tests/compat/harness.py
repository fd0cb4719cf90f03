"""The compatibility scripts' shared check counter: `check(name, cond, detail)` prints `ok` or
`FAIL` and counts into `RESULTS`, which each script reports as "N passed, M failed"."""

RESULTS = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        RESULTS["passed"] += 1
        print(f"ok   {name}")
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name} {detail}")
