// What the PostgreSQL tests share: everything a test opened is closed after it, whatever happened,
// each within a deadline, and conditions are waited for rather than sampled.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

export function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)));
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it holds; fails with `what` after `ms`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Registers an afterEach that runs the test's cleanups in reverse, 15 s each; returns where to push them and a temp-dir maker that cleans up its dirs. */
export function useCleanups(prefix: string): { cleanups: (() => Promise<unknown>)[]; tempDir: () => string } {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    const problems: string[] = [];
    for (const cleanup of cleanups.splice(0).reverse()) {
      await bounded(cleanup(), 15_000, 'a cleanup').catch((err: Error) => problems.push(err.message));
    }
    if (problems.length > 0) throw new Error(problems.join('; '));
  });
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };
  return { cleanups, tempDir };
}
