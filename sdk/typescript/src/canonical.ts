/**
 * Canonical JSON and `requestHash`, byte for byte what the daemon computes (docs/decision-log.md):
 * keys sorted by code point, no whitespace, text unescaped except `\" \\ \b \f \n \r \t` and
 * `\u00XX` for other control characters, integers with all their digits (pass a `bigint` for
 * integers beyond 2^53), other numbers positional without exponent or trailing zeros.
 */
import { createHash } from "node:crypto";

const ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

function str(text: string): string {
  let out = '"';
  for (const ch of text) {
    const esc = ESCAPES[ch];
    if (esc !== undefined) out += esc;
    else if (ch.charCodeAt(0) < 0x20) out += "\\u" + ch.charCodeAt(0).toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}

/** The positional form of a finite number from its shortest round-trip digits. */
function num(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`number ${value} is not finite: NaN and infinities are not allowed`);
  if (value === 0) return "0";
  const text = String(value); // shortest digits that round-trip, maybe with an exponent
  const negative = text.startsWith("-");
  const body = negative ? text.slice(1) : text;
  const [mantissa = "", expText] = body.split("e");
  const exp = expText === undefined ? 0 : Number(expText);
  const [intPart = "", fracPart = ""] = mantissa.split(".");
  let digits = intPart + fracPart;
  let point = intPart.length + exp;
  const lead = digits.length - digits.replace(/^0+/, "").length;
  digits = digits.slice(lead);
  point -= lead;
  digits = digits.replace(/0+$/, "");
  if (!digits) return "0";
  let out: string;
  if (point <= 0) out = "0." + "0".repeat(-point) + digits;
  else if (point >= digits.length) out = digits + "0".repeat(point - digits.length);
  else out = digits.slice(0, point) + "." + digits.slice(point);
  return negative ? "-" + out : out;
}

/** Code point order (JavaScript's `<` compares UTF-16 units, which differs above U+FFFF). */
function byCodePoint(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = (x[i]?.codePointAt(0) ?? 0) - (y[i]?.codePointAt(0) ?? 0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** The canonical JSON text of `value`. */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return num(value);
  if (typeof value === "string") return str(value);
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value as object)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort(byCodePoint);
    return "{" + keys.map((k) => str(k) + ":" + canonicalJson((value as Record<string, unknown>)[k])).join(",") + "}";
  }
  throw new TypeError(`${typeof value} is not JSON`);
}

/** SHA-256 (hex) of the canonical `{agent_id, context, operation, params, tool}`. */
export function requestHash(
  agentId: string,
  tool: string,
  operation: string,
  params: Record<string, unknown>,
  context: Record<string, unknown>,
): string {
  const body = canonicalJson({ agent_id: agentId, context, operation, params, tool });
  return createHash("sha256").update(body, "utf8").digest("hex");
}
