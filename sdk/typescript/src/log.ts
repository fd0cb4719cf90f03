/** The SDK's logger: decisions, transport choice, reconnects. Quiet unless FARAMESH_LOG_LEVEL
 * (`debug`, `info`, `warn`) or `setLogger` says otherwise; warnings always go to stderr. */

export type Level = "debug" | "info" | "warn";
export type Logger = (level: Level, message: string) => void;

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2 };

let sink: Logger = (level, message) => {
  const wanted = (process.env["FARAMESH_LOG_LEVEL"] as Level | undefined) ?? "warn";
  if (ORDER[level] >= (ORDER[wanted] ?? ORDER.warn)) console.error(message);
};

/** Sends the SDK's log lines to `logger` (for example your application's logger). */
export function setLogger(logger: Logger): void {
  sink = logger;
}

export function log(level: Level, message: string): void {
  sink(level, message);
}
