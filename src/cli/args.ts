// What every command of the CLI shares: its options as parsed, usage errors (exit 2) and the
// small readers of positional arguments.
export type CliValues = Record<string, unknown>;

/** A command line the CLI cannot run; main prints the usage with it. */
export class UsageError extends Error {}

export function need<T>(value: T | undefined, message: string): T {
  if (value === undefined || value === '') throw new UsageError(message);
  return value;
}

export function splitPair(text: string, what: string): [string, string] {
  const i = text.indexOf('=');
  if (i <= 0) throw new UsageError(`${what} "${text}" is not key=value`);
  return [text.slice(0, i), text.slice(i + 1)];
}

export const enc = encodeURIComponent;
