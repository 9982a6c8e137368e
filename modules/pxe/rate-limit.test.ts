// The script route's token buckets on a clock the test sets: burst, refill, what a refusal takes
// (nothing), which refusal is worth a log line, and the bound on keys a flood of MACs could add.
import { describe, expect, it } from 'vitest';
import { RateLimiter } from './rate-limit.js';

describe('RateLimiter', () => {
  it('spends the burst, then says how long until the next request refills', () => {
    const limiter = new RateLimiter({ burst: 2, perMinute: 6 }); // one per 10 s
    for (let i = 0; i < 2; i++) {
      expect(limiter.waitMs('a', 0)).toBe(0);
      limiter.take('a', 0);
    }
    expect(limiter.waitMs('a', 0)).toBe(10_000);
    expect(limiter.waitMs('a', 4_000)).toBe(6_000);
    expect(limiter.waitMs('b', 0)).toBe(0);
    expect(limiter.waitMs('a', 10_000)).toBe(0);
    // Refills up to the burst, not beyond.
    expect(limiter.waitMs('a', 1_000_000)).toBe(0);
    limiter.take('a', 1_000_000);
    limiter.take('a', 1_000_000);
    expect(limiter.waitMs('a', 1_000_000)).toBe(10_000);
  });

  it('reports the first refusal of a run only, until the key is served again', () => {
    const limiter = new RateLimiter({ burst: 1, perMinute: 60 });
    limiter.take('a', 0);
    expect([limiter.refused('a'), limiter.refused('a')]).toEqual([true, false]);
    limiter.take('a', 1_000);
    expect(limiter.refused('a')).toBe(true);
  });

  it('keeps at most maxKeys buckets, dropping full ones first and then the least recently used', () => {
    const limiter = new RateLimiter({ burst: 1, perMinute: 60 }, 3);
    limiter.take('old', 0);
    limiter.take('a', 5_000);
    limiter.take('b', 5_000);
    limiter.take('c', 5_000); // 'old' has refilled: it goes, the spent ones stay
    expect([limiter.waitMs('a', 5_000), limiter.waitMs('b', 5_000), limiter.waitMs('c', 5_000)]).toEqual([1_000, 1_000, 1_000]);
    limiter.take('d', 5_000); // none full: the least recently used ('a') goes
    expect(limiter.waitMs('a', 5_000)).toBe(0);
    expect(limiter.waitMs('b', 5_000)).toBe(1_000);
  });
});
