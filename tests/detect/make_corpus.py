#!/usr/bin/env python3
"""Writes policy/tests/detect_corpus/{secrets,near_misses}.txt: fake secrets and personal data
in valid formats (right prefixes, lengths and checksums, random otherwise; none is real), and
values that look close to them but are not secrets or personal data.

    python3 tests/detect/make_corpus.py   # from the repository root; deterministic (fixed seed)

Format: one case per line; `\\n` stands for a line break. secrets.txt: `<detector><TAB><text>`.
"""
import base64
import random
import string
import urllib.parse
import uuid
from pathlib import Path

rng = random.Random(20261206)
UP, LO, DIG = string.ascii_uppercase, string.ascii_lowercase, string.digits
ALNUM = UP + LO + DIG
URLSAFE = ALNUM + "-_"
B64 = ALNUM + "+/"
HEX = "0123456789abcdef"


def r(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_complete(prefix, length):
    body = prefix + r(DIG, length - len(prefix) - 1)
    for check in DIG:
        digits = [int(c) for c in body + check]
        total = 0
        for i, d in enumerate(reversed(digits)):
            if i % 2 == 1:
                d *= 2
                d = d - 9 if d > 9 else d
            total += d
        if total % 10 == 0:
            return body + check
    raise AssertionError


def iban(country, bban):
    def num(s):
        return int("".join(str(int(c, 36)) for c in s))
    check = 98 - num(bban + country + "00") % 97
    return f"{country}{check:02d}{bban}"


def group(s, n=4, sep=" "):
    return sep.join(s[i:i + n] for i in range(0, len(s), n))


def aws():
    return rng.choice(["AKIA", "ASIA"]) + r(UP + "234567", 16)


def github():
    kind = rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"])
    if kind == "github_pat_":
        return kind + r(ALNUM, 22) + "_" + r(ALNUM, 59)
    return kind + r(ALNUM, 36)


def slack():
    kind = rng.choice(["xoxb", "xoxp", "xapp"])
    if kind == "xoxb":
        return f"xoxb-{r(DIG, 11)}-{r(DIG, 13)}-{r(ALNUM, 24)}"
    if kind == "xoxp":
        return f"xoxp-{r(DIG, 11)}-{r(DIG, 11)}-{r(DIG, 13)}-{r(HEX, 32)}"
    return f"xapp-1-A{r(UP + DIG, 10)}-{r(DIG, 13)}-{r(HEX, 64)}"


def stripe():
    return rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + r(ALNUM, rng.choice([24, 99]))


def google():
    return "AIza" + r(URLSAFE, 35)


def openai():
    if rng.random() < 0.5:
        return "sk-" + r(ALNUM, 20) + "T3BlbkFJ" + r(ALNUM, 20)
    return "sk-proj-" + r(URLSAFE, 74) + "T3BlbkFJ" + r(URLSAFE, 74)


def anthropic():
    return "sk-ant-api03-" + r(URLSAFE, 93) + "AA"


def b64url(data):
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def jwt():
    header = b64url('{"alg":"%s","typ":"JWT"}' % rng.choice(["HS256", "RS256", "ES256"]))
    payload = b64url('{"sub":"%s","iat":%d,"scope":"%s"}' % (r(DIG, 8), 1760000000 + rng.randrange(10**7), rng.choice(["read", "admin", "repo"])))
    return f"{header}.{payload}.{r(URLSAFE, rng.choice([43, 86, 342]))}"


def private_key():
    label = rng.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY"])
    body = "\\n".join(r(B64, 64) for _ in range(rng.randint(3, 8)))
    return f"-----BEGIN {label}-----\\n{body}\\n-----END {label}-----"


def secret_value():
    return rng.choice([r(ALNUM, 24), r(B64, 40), r(HEX, 40), r(ALNUM + "!@#$%^*", 20)])


def card():
    kind = rng.choice(["visa", "mc", "mc2", "amex", "disc"])
    if kind == "visa":
        n = luhn_complete("4" + r(DIG, 5), 16)
    elif kind == "mc":
        n = luhn_complete(str(rng.randint(51, 55)) + r(DIG, 4), 16)
    elif kind == "mc2":
        n = luhn_complete(str(rng.randint(2221, 2720)) + r(DIG, 2), 16)
    elif kind == "amex":
        n = luhn_complete(rng.choice(["34", "37"]) + r(DIG, 4), 15)
    else:
        n = luhn_complete("6011" + r(DIG, 2), 16)
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain" or kind == "amex":
        return n if style == "plain" or kind != "amex" else f"{n[:4]} {n[4:10]} {n[10:]}"
    return group(n, 4, " " if style == "space" else "-")


def an_iban():
    country, bban = rng.choice([
        ("DE", lambda: r(DIG, 18)),
        ("FR", lambda: r(DIG, 10) + r(UP + DIG, 11) + r(DIG, 2)),
        ("GB", lambda: r(UP, 4) + r(DIG, 14)),
        ("NL", lambda: r(UP, 4) + r(DIG, 10)),
        ("ES", lambda: r(DIG, 20)),
        ("IT", lambda: r(UP, 1) + r(DIG, 10) + r(UP + DIG, 12)),
        ("BE", lambda: r(DIG, 12)),
        ("CH", lambda: r(DIG, 5) + r(UP + DIG, 12)),
    ])
    code = iban(country, bban())
    return group(code) if rng.random() < 0.5 else code


FIRST = ["anna", "jonas", "li.wei", "maria", "sam", "priya", "olivier", "kenji", "fatima", "noah"]
DOMAINS = ["gmail.com", "outlook.com", "acme-corp.io", "mail.uni-heidelberg.de", "protonmail.ch", "yahoo.co.uk", "fastmail.fm"]


def email():
    return f"{rng.choice(FIRST)}{rng.choice(['', '.', '_', '+work'])}{r(DIG, rng.choice([0, 2]))}@{rng.choice(DOMAINS)}"


def phone():
    return rng.choice([
        lambda: f"+1 {rng.randint(201, 989)} {rng.randint(200, 999)} {r(DIG, 4)}",
        lambda: f"+1-{rng.randint(201, 989)}-{rng.randint(200, 999)}-{r(DIG, 4)}",
        lambda: f"+44 7{r(DIG, 3)} {r(DIG, 6)}",
        lambda: f"+49 30 {r(DIG, 8)}",
        lambda: f"+33 6 {r(DIG, 2)} {r(DIG, 2)} {r(DIG, 2)} {r(DIG, 2)}",
        lambda: f"+91 98{r(DIG, 3)} {r(DIG, 5)}",
        lambda: f"+61 4{r(DIG, 2)} {r(DIG, 3)} {r(DIG, 3)}",
        lambda: f"+{rng.choice(['81', '34', '39', '55'])}{r(DIG, 9)}",
    ])()


def ssn():
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


CONTEXTS = {
    "secret": ["{v}", "export TOKEN_VALUE={v}", "curl -H 'X-Key: {v}' https://api.internal", "key is {v} (rotate after use)", '{{"k": "{v}"}}', "config:\\n  key: {v}\\n", "{v}\\n", "?x={v}&y=1"],
    "pii": ["{v}", "Contact: {v}", "customer {v} called about the refund", '{{"value": "{v}"}}', "row 17; {v}; pending"],
}

GENERATORS = [
    ("aws_access_key", aws, "secret"),
    ("github_token", github, "secret"),
    ("slack_token", slack, "secret"),
    ("stripe_key", stripe, "secret"),
    ("google_api_key", google, "secret"),
    ("openai_key", openai, "secret"),
    ("anthropic_key", anthropic, "secret"),
    ("jwt", jwt, "secret"),
    ("private_key", private_key, "secret"),
    ("card_number", card, "pii"),
    ("iban", an_iban, "pii"),
    ("email", email, "pii"),
    ("phone", phone, "pii"),
    ("us_ssn", ssn, "pii"),
]

ASSIGNMENTS = ["DB_PASSWORD={v}", "client_secret: {v}", "Authorization: Bearer {v}", "aws_secret_access_key = {v}", '"api_key": "{v}"', "--password '{v}'", "SECRET_KEY={v}", "refresh_token={v}"]


def positives():
    lines = []
    for name, gen, kind in GENERATORS:
        for _ in range(20):
            lines.append((name, rng.choice(CONTEXTS[kind]).format(v=gen())))
    for _ in range(30):
        v = secret_value()
        while not (any(c.isdigit() for c in v) and any(c.isalpha() for c in v)):
            v = secret_value()
        lines.append(("high_entropy_assignment", rng.choice(ASSIGNMENTS).format(v=v)))
    # Encoded once: base64 of a config line, a URL-encoded value.
    for _ in range(10):
        name, gen, _ = rng.choice(GENERATORS[:8])
        lines.append((name, base64.b64encode(f"deploy with key {gen()} today".encode()).decode()))
    for _ in range(5):
        lines.append(("private_key", "data=" + urllib.parse.quote(private_key().replace("\\n", "\n"))))
    for _ in range(5):
        lines.append(("email", "https://crm.internal/find?q=" + urllib.parse.quote(f"owner: <{email()}>")))
    return lines


def near_misses():
    lines = []
    for _ in range(25):
        lines.append(rng.choice(["request_id: {}", "token: {}", "{}", "trace {} done", "session_token={}"]).format(uuid.UUID(int=rng.getrandbits(128), version=4)))
    for _ in range(20):
        lines.append(rng.choice(["commit {}", "git checkout {}", "Merge {} into main", "sha={}"]).format(r(HEX, 40)))
    for _ in range(15):
        lines.append(rng.choice(["sha256:{}", "checksum {}", "etag: \"{}\"", "digest={}"]).format(r(HEX, 64)))
    for _ in range(10):
        lines.append(rng.choice(["md5 {}", "cache key {}"]).format(r(HEX, 32)))
    lines += [
        "AKIAIOSFODNN7EXAMPLE",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AKIAXXXXXXXXXXXXXXXX",
        "AKIA1234567890ABCDEF",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "ghp_************************************",
        "github_pat_XXXXXXXXXXXXXXXXXXXXXX_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "stripe.api_key = 'sk_test_BQokikJOvBiI2HlWgH4olfQ2'",
        "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
        "sk_live_...",
        "pk_live_" + r(ALNUM, 24),
        "pk_test_" + r(ALNUM, 24),
        "xoxb-your-token-here",
        "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "AIza...",
        "sk-...",
        "sk-proj-...",
        "OPENAI_API_KEY=sk-your-key-here",
        "ANTHROPIC_API_KEY=<your-key>",
        "sk-ant-api03-...",
        "api_key=YOUR_API_KEY_HERE",
        "token=${GITHUB_TOKEN}",
        "password: changeme",
        "password: ********",
        "Authorization: Bearer <token>",
        "Authorization: Bearer $TOKEN",
        "client_secret: REPLACE_WITH_YOUR_CLIENT_SECRET",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "eyJhbGciOiJIUzI1NiJ9",
        "-----BEGIN RSA PRIVATE KEY-----\\n...\\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PUBLIC KEY-----\\n" + "\\n".join(r(B64, 64) for _ in range(4)) + "\\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\\n" + "\\n".join(r(B64, 64) for _ in range(6)) + "\\n-----END CERTIFICATE-----",
        "Set the OPENAI_API_KEY environment variable before running.",
        "The key starts with AKIA and is 20 characters long.",
        "max_tokens: 4096",
        "next_page_token=" + r(ALNUM, 40),
        "page_token: CAESJwoTCgR" + r(ALNUM, 30),
        "csrf_token=" + r(ALNUM, 32),
        "token_type: Bearer",
        "password_min_length=12",
    ]
    texts = ["Hello world, this is an ordinary sentence.", "The quick brown fox jumps over the lazy dog.", "Meeting moved to Thursday at 3pm, room 204.",
             "Please review the pull request before Friday.", "{\"name\": \"widget\", \"qty\": 3, \"color\": \"blue\"}", "SELECT id, name FROM users WHERE active = true;",
             "Release notes: fixed the login redirect and improved caching.", "lorem ipsum dolor sit amet, consectetur adipiscing elit"]
    for t in texts:
        lines.append(base64.b64encode(t.encode()).decode())
        lines.append("data=" + urllib.parse.quote(t))
    lines += ["1.2.3", "v10.15.3", "Python 3.12.1", "2026.12.06", "release 2026-12-06", "1.0.0+20130313144700", "version +1.0.0", "+100% growth", "score +12 -3",
              "build 20261206.1423", "ts=1733443200000", "epoch 1733443200", "ip 192.168.1.10", "10.0.0.1:8080", "mac 00:1A:2B:3C:4D:5E", "port 5432", "0.4111111111111111",
              "ISBN 978-3-16-148410-0", "ORD-2026-004512", "invoice INV-00012345", "tracking 1Z999AA10123456784",
              "+1 555 0123", "tel: +1-202-555-0143", "+44 20 7946 0958", "+44 7700 900123", "call +1 (415) 555-0100", "+33", "+49 30 123",
              "078-05-1120", "123-45-6789", "000-12-3456", "666-12-3456", "987-65-4321", "part 123-45-67890", "12-345-6789",
              "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "DE12 3456 7890 1234 5678 99", "GB00TEST00000000000000",
              "user@example.com", "admin@example.org", "someone@test", "git@github.com:faramesh/faramesh.git", "icon@2x.png", "npm i lodash@4.17.21", "@scope/pkg",
              "12345+noreply@users.noreply.github.com", "root@localhost", "https://user:pass@host.internal/path", "noreply@company.com",
              "4111 1111 1111 1111", "4242424242424242", "5555-5555-5555-4444", "378282246310005", "0000 0000 0000 0000", "1234 5678 9012 3456"]
    for _ in range(30):
        lines.append(rng.choice(["order {}", "Order id {}", "ref={}", "id {}"]).format(r(DIG, rng.randint(12, 18))))
    return lines


def main():
    out = Path("policy/tests/detect_corpus")
    out.mkdir(parents=True, exist_ok=True)
    header = "# Generated by tests/detect/make_corpus.py (fixed seed). Fake values in valid formats; none is real.\n"
    with open(out / "secrets.txt", "w") as f:
        f.write(header + "# <detector>\\t<text>; \\n stands for a line break.\n")
        for name, text in positives():
            f.write(f"{name}\t{text}\n")
    with open(out / "near_misses.txt", "w") as f:
        f.write(header + "# One text per line; \\n stands for a line break. None should be reported.\n")
        for text in near_misses():
            f.write(text + "\n")


if __name__ == "__main__":
    main()
