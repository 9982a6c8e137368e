// The raw bytes of a compressed disk image, measured once when it is imported: the store checks
// the stored file's own sha256 as it copies it, but a node writes what the file decompresses to,
// so that is streamed through its decompressor (zstd as a `zstd -dc` child, gzip with node:zlib),
// counted and hashed, and compared with the manifest's rawSize and rawSha256. Reading stops one
// chunk past the size the manifest says, so a small file that expands without end costs nothing.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

export type RawDiskBytes = { complete: true; size: number; sha256: string } | { complete: false; readPast: number };

/** The file does not decompress in its format (or its decompressor cannot run); the message says why. */
export class DiskDecompressionError extends Error {}

/** How long a stopped `zstd` gets to end after SIGTERM, and then after SIGKILL, before it is left behind. */
const ZSTD_STOP_GRACE_MS = 2000;
const STDERR_KEPT_BYTES = 4096;

/** Decompresses `path` and returns its size and sha256, or how far it read when it went past `limit` bytes. */
export async function rawDiskBytes(path: string, format: 'zstd' | 'gzip', limit: number): Promise<RawDiskBytes> {
  return format === 'zstd' ? zstdBytes(path, limit) : gzipBytes(path, limit);
}

/** Hashes and counts what is written to it; fails with PastLimit once it has more than `limit` bytes. */
class HashingSink extends Writable {
  readonly hash = createHash('sha256');
  bytes = 0;

  constructor(private readonly limit: number) {
    super({ highWaterMark: 1 << 20 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return done(new PastLimit());
    this.hash.update(chunk);
    done();
  }
}

class PastLimit extends Error {}

async function gzipBytes(path: string, limit: number): Promise<RawDiskBytes> {
  const sink = new HashingSink(limit);
  try {
    await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), createGunzip(), sink);
  } catch (err) {
    if (err instanceof PastLimit) return { complete: false, readPast: sink.bytes };
    throw new DiskDecompressionError(`not gzip data, or cut short: ${(err as Error).message}`);
  }
  return { complete: true, size: sink.bytes, sha256: sink.hash.digest('hex') };
}

async function zstdBytes(path: string, limit: number): Promise<RawDiskBytes> {
  const child = spawn('zstd', ['-d', '-c', '-q', '--', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    child.once('error', (spawnError) => resolve({ code: null, signal: null, spawnError }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    if (stderr.length < STDERR_KEPT_BYTES) stderr += chunk.toString('utf8').slice(0, STDERR_KEPT_BYTES - stderr.length);
  });
  const sink = new HashingSink(limit);
  try {
    await pipeline(child.stdout as Readable, sink);
  } catch (err) {
    await stop(child, ended);
    if (err instanceof PastLimit) return { complete: false, readPast: sink.bytes };
    throw new DiskDecompressionError(`reading zstd's output failed: ${(err as Error).message}`);
  }
  const { code, signal, spawnError } = await ended;
  if (spawnError) {
    const missing = (spawnError as NodeJS.ErrnoException).code === 'ENOENT';
    throw new DiskDecompressionError(missing ? 'zstd is not installed on the appliance (apt-get install zstd)' : `zstd could not start: ${spawnError.message}`);
  }
  if (code !== 0) throw new DiskDecompressionError(`not zstd data, or cut short: zstd ${signal ? `was killed by ${signal}` : `exited with ${code}`}: ${stderr.trim() || 'no message'}`);
  return { complete: true, size: sink.bytes, sha256: sink.hash.digest('hex') };
}

/** Ends a decompressor whose output is no longer wanted: SIGTERM, then SIGKILL, each given a bounded time. */
async function stop(child: ChildProcess, ended: Promise<unknown>): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([ended.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ZSTD_STOP_GRACE_MS, false)))]);
    clearTimeout(timer);
    if (gone) return;
  }
}
