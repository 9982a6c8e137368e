// Token buckets by key, for the iPXE script route: anyone on the provisioning network may ask for
// any MAC's script (it carries the boot's bootstrap token), so asking is metered per MAC and per
// source address. A bucket holds up to `burst` requests and refills at `perMinute`; a refused
// request takes nothing, so a client that waits as told is served.
import { z } from 'zod';

export const BucketOptionsSchema = z
  .object({
    burst: z.number().int().min(1),
    perMinute: z.number().positive(),
  })
  .strict();
export type BucketOptions = z.infer<typeof BucketOptionsSchema>;

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  /** Keys refused since they last spent a request: a refusal is logged once per run of them, not per request. */
  private readonly refusing = new Set<string>();
  private readonly perMs: number;

  /** `maxKeys` bounds memory under requests for ever-new keys (random MACs); full buckets go first. */
  constructor(
    private readonly options: BucketOptions,
    private readonly maxKeys = 100_000,
  ) {
    this.perMs = options.perMinute / 60_000;
  }

  /** Milliseconds until `key` has a request to spend; 0 when it has one now. Takes nothing. */
  waitMs(key: string, now: number): number {
    const tokens = this.tokensAt(this.buckets.get(key), now);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.perMs);
  }

  /** Notes a refused request; true for the first of a run (the one worth logging). */
  refused(key: string): boolean {
    if (this.refusing.has(key)) return false;
    if (this.refusing.size >= this.maxKeys) this.refusing.clear();
    this.refusing.add(key);
    return true;
  }

  take(key: string, now: number): void {
    this.refusing.delete(key);
    const tokens = this.tokensAt(this.buckets.get(key), now);
    // Re-inserted, so the map's order is least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    if (this.buckets.size > this.maxKeys) this.evict(now);
  }

  private tokensAt(bucket: Bucket | undefined, now: number): number {
    return bucket ? Math.min(this.options.burst, bucket.tokens + (now - bucket.at) * this.perMs) : this.options.burst;
  }

  private evict(now: number): void {
    for (const [key, bucket] of this.buckets) if (this.tokensAt(bucket, now) >= this.options.burst) this.buckets.delete(key);
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= this.maxKeys) break;
      this.buckets.delete(key);
    }
  }
}
