// A bounded, least-recently-used cache of whole files, for the boot files many machines
// fetch at once (loaders, a kernel): each is read once and every transfer slices its blocks
// from the one Buffer, instead of each transfer reading the file again through the thread pool.
//
// Entries are keyed by the source's file identity and checked against its version on every
// request, so a file replaced or rewritten on disk is read again, and its old bytes dropped.
// Files larger than `maxFileBytes` are never cached; they are read in chunks as before.
import type { TftpSource } from './resolver.js';

interface Entry {
  version: string;
  size: number;
  contents: Promise<Buffer>;
}

export interface ContentCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
}

/** Reads all `source.size` bytes; fails if the source ends early (the file shrank while being read). */
export async function readWhole(source: TftpSource): Promise<Buffer> {
  // Shared memory, so transfer threads slice the same bytes instead of each getting a copy
  // (and never Buffer's pool, so a cached small file pins no unrelated slab).
  const data = Buffer.from(new SharedArrayBuffer(source.size));
  let filled = 0;
  while (filled < data.length) {
    const read = await source.read(data, filled, data.length - filled, filled);
    if (read === 0) throw new Error(`file ended at ${filled} bytes, before its size ${source.size}: it changed while being read`);
    filled += read;
  }
  return data;
}

export class ContentCache {
  /** In least-recently-used order: a hit moves its entry to the end. */
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly maxFileBytes: number,
  ) {}

  /**
   * The whole contents of `source`, from the cache or read now (and kept); undefined when the
   * source cannot be cached (no cacheKey, or too big). Concurrent requests for a file share one read.
   */
  contents(source: TftpSource): Promise<Buffer> | undefined {
    const key = source.cacheKey;
    if (key === undefined || source.size > this.maxFileBytes || source.size > this.maxBytes) return undefined;
    const hit = this.entries.get(key.id);
    if (hit !== undefined && hit.version === key.version && hit.size === source.size) {
      this.entries.delete(key.id);
      this.entries.set(key.id, hit);
      this.hits++;
      return hit.contents;
    }
    if (hit !== undefined) this.remove(key.id, hit);
    this.misses++;
    const entry: Entry = { version: key.version, size: source.size, contents: readWhole(source) };
    this.entries.set(key.id, entry);
    this.bytes += entry.size;
    // The oldest go first; the entry just added is the newest and fits on its own.
    for (const [id, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.remove(id, old);
    }
    // A failed read is not kept: the next request tries again.
    entry.contents.catch(() => {
      if (this.entries.get(key.id) === entry) this.remove(key.id, entry);
    });
    return entry.contents;
  }

  stats(): ContentCacheStats {
    return { entries: this.entries.size, bytes: this.bytes, hits: this.hits, misses: this.misses };
  }

  private remove(id: string, entry: Entry): void {
    this.entries.delete(id);
    this.bytes -= entry.size;
  }
}
