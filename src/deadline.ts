// Bounded waiting. A shutdown or teardown that waits on something that never ends (a socket a
// peer keeps open, a child that ignores SIGTERM) must not hang its caller: each wait gets a
// deadline, and an overrun names what it was waiting for.

export class DeadlineError extends Error {
  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(`${what}: not done after ${ms} ms`);
    this.name = 'DeadlineError';
  }
}

/** Resolves or rejects as `work` does, or rejects with a DeadlineError naming `what` after `ms`. */
export async function withDeadline<T>(what: string, ms: number, work: Promise<T> | (() => Promise<T>)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(what, ms)), ms);
  });
  try {
    return await Promise.race([typeof work === 'function' ? work() : work, overrun]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs each step of a shutdown in order, each within its own deadline; a step that fails or
 * overruns does not stop the steps after it. Resolves with one line per step that did not finish.
 */
export async function runBounded(steps: ReadonlyArray<readonly [what: string, ms: number, step: () => Promise<unknown> | unknown]>): Promise<string[]> {
  const problems: string[] = [];
  for (const [what, ms, step] of steps) {
    try {
      await withDeadline(what, ms, async () => step());
    } catch (err) {
      problems.push(err instanceof DeadlineError ? err.message : `${what}: ${(err as Error).message}`);
    }
  }
  return problems;
}
