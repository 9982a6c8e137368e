// Process helpers for the lab. Cleanup must work from a signal or `exit` handler, where
// nothing asynchronous runs any more, so stopping a process here is synchronous.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface TrackedProcess {
  label: string;
  pid: number;
  child: ChildProcess;
  /** stdout and stderr of the process, appended. */
  logFile: string;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/** Blocks the thread; only for short waits inside synchronous cleanup. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/** True while `pid` runs. A zombie counts as gone: it holds no tap, socket or CPU. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state letter follows the command name, which is in parentheses and may contain spaces.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The command line of a live process, or undefined when it is gone. */
export function commandLine(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

/**
 * SIGTERM, then SIGKILL if the process is still there after `graceMs`, then waits until
 * it is gone (a QEMU must have released its tap before the next one can open it).
 * Returns false only if the process survived SIGKILL for two seconds.
 */
export function stopProcess(pid: number, graceMs = 1_000): boolean {
  if (!isAlive(pid)) return true;
  signal(pid, 'SIGTERM');
  if (waitGone(pid, graceMs)) return true;
  signal(pid, 'SIGKILL');
  return waitGone(pid, 2_000);
}

/** SIGKILL, then waits until the process is gone, at most `ms`; false if it is still there. */
export function killProcess(pid: number, ms = 2_000): boolean {
  if (!isAlive(pid)) return true;
  signal(pid, 'SIGKILL');
  return waitGone(pid, ms);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function waitGone(pid: number, ms: number): boolean {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    sleepSync(20);
  }
  return true;
}

/** Quotes one word for POSIX sh. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` until it returns a value other than undefined, or throws `what` at the deadline. */
export async function pollUntil<T>(what: string, timeoutMs: number, probe: () => T | undefined, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value instanceof Promise) throw new Error(`pollUntil(${what}): the probe returned a promise, which is never undefined; use pollUntilAsync`);
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** pollUntil for a probe that answers asynchronously (an HTTP request): each probe is awaited before the next. */
export async function pollUntilAsync<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
