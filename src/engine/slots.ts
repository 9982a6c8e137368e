// Concurrency limits for actions: a global cap per step (e.g. power.on, against inrush current)
// and one action at a time per BMC. Waiters are woken first-come, first-served, one per free slot.
export class Slots {
  private readonly used = new Map<string, number>();
  private readonly waiters = new Map<string, string[]>();

  constructor(private readonly capacity: (key: string) => number) {}

  /** Takes a slot under every key, or none; on failure the waiter is queued on the full key. */
  tryAcquire(keys: string[], waiter: string): boolean {
    const full = keys.find((k) => (this.used.get(k) ?? 0) >= this.capacity(k));
    if (full !== undefined) {
      const queue = this.waiters.get(full) ?? [];
      if (!queue.includes(waiter)) queue.push(waiter);
      this.waiters.set(full, queue);
      return false;
    }
    for (const k of keys) this.used.set(k, (this.used.get(k) ?? 0) + 1);
    return true;
  }

  /** Frees the slots and returns the waiters to wake. */
  release(keys: string[]): string[] {
    const wake: string[] = [];
    for (const k of keys) {
      const n = (this.used.get(k) ?? 1) - 1;
      if (n <= 0) this.used.delete(k);
      else this.used.set(k, n);
      const queue = this.waiters.get(k);
      const next = queue?.shift();
      if (next !== undefined) wake.push(next);
      if (queue && queue.length === 0) this.waiters.delete(k);
    }
    return wake;
  }

  inUse(key: string): number {
    return this.used.get(key) ?? 0;
  }
}
