import { describe, expect, it } from 'vitest';
import { DeadlineError, runBounded, withDeadline } from './deadline.js';

describe('withDeadline', () => {
  it('passes a result through', async () => {
    await expect(withDeadline('quick', 1_000, Promise.resolve(7))).resolves.toBe(7);
  });
  it('names what it waited for when the work overruns', async () => {
    const never = new Promise<void>(() => {});
    const err = await withDeadline('the forwarder to close', 30, never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineError);
    expect((err as Error).message).toBe('the forwarder to close: not done after 30 ms');
  });
});

describe('runBounded', () => {
  it('runs every step, past one that hangs and one that throws, and names both', async () => {
    const ran: string[] = [];
    const problems = await runBounded([
      ['hangs', 30, () => new Promise(() => ran.push('hangs'))],
      ['throws', 1_000, () => {
        ran.push('throws');
        throw new Error('boom');
      }],
      ['fine', 1_000, async () => void ran.push('fine')],
    ]);
    expect(ran).toEqual(['hangs', 'throws', 'fine']);
    expect(problems).toEqual(['hangs: not done after 30 ms', 'throws: boom']);
  });
});
