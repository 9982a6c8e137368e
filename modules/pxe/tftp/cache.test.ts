// The content cache: one read per file version, shared by concurrent requests; versions
// checked on every request; least recently used files dropped to stay within its budget.
import { describe, expect, it } from 'vitest';
import { ContentCache, readWhole } from './cache.js';
import type { TftpSource } from './resolver.js';

function fakeFile(id: string, content: string | Buffer, version = 'v1') {
  const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
  const calls = { reads: 0 };
  let release: (() => void) | undefined;
  const source = (options: { gate?: Promise<void>; fail?: boolean; key?: boolean } = {}): TftpSource => ({
    size: data.length,
    ...(options.key === false ? {} : { cacheKey: { id, version } }),
    async read(target, offset, length, position) {
      calls.reads++;
      await options.gate;
      if (options.fail) throw new Error('EIO');
      const n = Math.min(length, data.length - position);
      data.copy(target, offset, position, position + n);
      return n;
    },
    async close() {},
  });
  return { source, calls, data, gate: () => new Promise<void>((r) => (release = r)), release: () => release?.() };
}

describe('content cache', () => {
  it('reads a file once and serves every later request the same shared bytes', async () => {
    const cache = new ContentCache(1000, 1000);
    const file = fakeFile('1:10', 'kernel bytes');
    const first = await cache.contents(file.source());
    const second = await cache.contents(file.source());
    expect(first?.toString()).toBe('kernel bytes');
    expect(second).toBe(first);
    expect(first!.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(file.calls.reads).toBe(1);
    expect(cache.stats()).toEqual({ entries: 1, bytes: 12, hits: 1, misses: 1 });
  });

  it('shares one read between requests that arrive while it is under way', async () => {
    const cache = new ContentCache(1000, 1000);
    const file = fakeFile('1:10', 'abc');
    const gate = file.gate();
    const a = cache.contents(file.source({ gate }));
    const b = cache.contents(file.source({ gate }));
    file.release();
    expect((await a)?.toString()).toBe('abc');
    expect(await b).toBe(await a);
    expect(file.calls.reads).toBe(1);
  });

  it('reads again when the file changed, and drops the old bytes', async () => {
    const cache = new ContentCache(1000, 1000);
    const old = fakeFile('1:10', 'old version', 'v1');
    const fresh = fakeFile('1:10', 'new', 'v2');
    expect((await cache.contents(old.source()))?.toString()).toBe('old version');
    expect((await cache.contents(fresh.source()))?.toString()).toBe('new');
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: 3, misses: 2 });
  });

  it('leaves out sources with no version and files over the per-file limit', () => {
    const cache = new ContentCache(1000, 10);
    expect(cache.contents(fakeFile('1:1', 'x').source({ key: false }))).toBeUndefined();
    expect(cache.contents(fakeFile('1:2', Buffer.alloc(11)).source())).toBeUndefined();
    expect(cache.contents(fakeFile('1:3', Buffer.alloc(10)).source())).toBeDefined();
  });

  it('drops the least recently used files to stay within its budget', async () => {
    const cache = new ContentCache(100, 100);
    const a = fakeFile('a', Buffer.alloc(40));
    const b = fakeFile('b', Buffer.alloc(40));
    const c = fakeFile('c', Buffer.alloc(40));
    await cache.contents(a.source());
    await cache.contents(b.source());
    await cache.contents(a.source()); // a is now more recent than b
    await cache.contents(c.source()); // 120 > 100: b goes
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 80 });
    await cache.contents(a.source());
    await cache.contents(b.source());
    expect(a.calls.reads).toBe(1);
    expect(b.calls.reads).toBe(2);
  });

  it('does not keep a failed read: the next request tries again', async () => {
    const cache = new ContentCache(1000, 1000);
    const file = fakeFile('1:10', 'abc');
    await expect(cache.contents(file.source({ fail: true }))).rejects.toThrow('EIO');
    await new Promise((r) => setImmediate(r));
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 });
    expect((await cache.contents(file.source()))?.toString()).toBe('abc');
  });

  it('refuses a file that ends before its size (it shrank while being read)', async () => {
    const source: TftpSource = { size: 10, read: async () => 0, close: async () => {} };
    await expect(readWhole(source)).rejects.toThrow('file ended at 0 bytes, before its size 10');
  });
});
