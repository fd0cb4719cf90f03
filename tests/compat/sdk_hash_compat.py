"""Compare `faramesh request-hash` with the published SDK's compute_request_hash.

Usage: python sdk_hash_compat.py PATH_TO_FARAMESH [N]
Generates N random payloads (nested objects and arrays, unicode, control characters, big
integers, awkward floats), hashes each with faramesh-sdk and with the binary, and reports
"N passed, M failed". Exit 1 on any mismatch.
"""
import json
import random
import subprocess
import sys

from faramesh.canonicalization import compute_request_hash

FLOATS = [1.5e-7, 123456.789, -0.0, 0.1, 1e21, 1e22, 1e-7, 2.5, 100.0, 1e16, 5e-324,
          1.7976931348623157e308, 0.30000000000000004, -1.25e-10, 9007199254740993.0, 1e3]
CHARS = "abcXYZ09 _-/\"\\\b\f\n\r\t\x00\x01\x1f\x7féüñ中文😀\u2028\u200b\u0455"


def rand_str(rng):
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 12)))


def rand_number(rng):
    kind = rng.randint(0, 5)
    if kind == 0:
        return rng.randint(-1000, 1000)
    if kind == 1:
        return rng.choice([1, -1]) * rng.randint(0, 10 ** rng.randint(10, 40))
    if kind == 2:
        return rng.choice(FLOATS)
    if kind == 3:
        return rng.uniform(-1e6, 1e6)
    if kind == 4:
        return rng.random() * 10 ** rng.randint(-30, 30)
    return float(rng.randint(-10 ** 6, 10 ** 6))


def rand_value(rng, depth):
    kind = rng.randint(0, 7 if depth < 4 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind in (2, 3):
        return rand_number(rng)
    if kind == 4:
        return rand_str(rng)
    if kind in (5, 6):
        return {rand_str(rng): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rng = random.Random(20261121)
    payloads = []
    for i in range(n):
        payloads.append({
            "agent_id": rand_str(rng) or "agent",
            "tool": rng.choice(["http", "shell", "stripe_refund", "db.query"]),
            "operation": rng.choice(["get", "exec", "process", "x/y"]),
            "params": {rand_str(rng): rand_value(rng, 1) for _ in range(rng.randint(0, 6))},
            "context": {rand_str(rng): rand_value(rng, 1) for _ in range(rng.randint(0, 3))},
        })
    lines = "".join(json.dumps(p, ensure_ascii=bool(i % 2)) + "\n" for i, p in enumerate(payloads))
    out = subprocess.run([binary, "request-hash"], input=lines.encode("utf-8"),
                         capture_output=True, check=False).stdout.decode("utf-8").splitlines()
    failed = 0
    for i, p in enumerate(payloads):
        want = compute_request_hash(p)
        got = out[i] if i < len(out) else "<missing>"
        if got != want:
            failed += 1
            if failed <= 5:
                print(f"mismatch {i}: sdk {want} faramesh {got}\n  payload {json.dumps(p)}")
    print(f"sdk hash compat: {n - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
