"""Runs Yelp's detect-secrets (an independent scanner, from PyPI) on the corpus our `detect:`
detectors are measured on, and prints its detection and false-positive rates beside ours.

    python3 -m venv /tmp/ds && /tmp/ds/bin/pip install -r tests/detect/requirements.txt
    /tmp/ds/bin/python tests/detect/compare_detect_secrets.py

Ours come from `cargo test -p faramesh-policy --test detect -- --nocapture`. detect-secrets
looks for secrets only, so the personal-data lines of the positive corpus are left out of its
detection rate (and reported apart).
"""

from __future__ import annotations

from pathlib import Path

from detect_secrets.core.scan import scan_line
from detect_secrets.settings import default_settings

CORPUS = Path(__file__).resolve().parents[2] / "policy" / "tests" / "detect_corpus"
PII = {"card_number", "iban", "email", "phone", "us_ssn"}


def lines(name: str) -> list[str]:
    text = (CORPUS / name).read_text()
    return [line.replace("\\n", "\n") for line in text.splitlines() if line and not line.startswith("#")]


def found(text: str) -> list[str]:
    out: list[str] = []
    for line in text.split("\n"):
        out.extend(s.type for s in scan_line(line))
    return out


def main() -> None:
    with default_settings():
        secrets = pii = hits = pii_hits = 0
        missed: dict[str, int] = {}
        for line in lines("secrets.txt"):
            detector, text = line.split("\t", 1)
            hit = bool(found(text))
            if detector in PII:
                pii += 1
                pii_hits += hit
            else:
                secrets += 1
                hits += hit
                if not hit:
                    missed[detector] = missed.get(detector, 0) + 1
        near = lines("near_misses.txt")
        reported = [t for t in near if found(t)]
    print(f"detect-secrets: secrets detected {hits}/{secrets} ({100 * hits / secrets:.1f}%)")
    print(f"detect-secrets: personal data (not what it looks for) {pii_hits}/{pii}")
    print(f"detect-secrets: near misses reported {len(reported)}/{len(near)} ({100 * len(reported) / len(near):.1f}%)")
    for detector, n in sorted(missed.items()):
        print(f"  missed {n} {detector}")
    for t in reported[:20]:
        print(f"  reported {t!r}")


if __name__ == "__main__":
    main()
