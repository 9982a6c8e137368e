// What a requested name refers to. The server asks a resolver, so the engine can serve
// virtual files (a per-node script, a file from the image store) as well as a directory.
// Files are read through a descriptor; a file that names its version (`cacheKey`) may be
// kept whole in the server's bounded content cache and served from memory (see cache.ts).
import { constants, type BigIntStats, type promises as fsPromises } from 'node:fs';
import { open, readlink, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';

export interface TftpPeer {
  address: string;
  port: number;
}

/** Bytes to serve. `size` is fixed up front: it answers tsize and decides where the last block ends. */
export interface TftpSource {
  readonly size: number;
  /** All `size` bytes, when they are already in memory: a transfer slices its blocks from here and never calls read. */
  readonly contents?: Buffer;
  /**
   * Which file this is (`id`) and which version of it (`version`, changing whenever its bytes
   * may have): a source that has one may be served from the server's content cache.
   */
  readonly cacheKey?: { id: string; version: string };
  /** Copies up to `length` bytes from file position `position` into `target` at `targetOffset`; returns how many. */
  read(target: Buffer, targetOffset: number, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface TftpReadRequest {
  /** The filename exactly as the client sent it. */
  path: string;
  client: TftpPeer;
}

export type TftpResolution =
  | { kind: 'source'; source: TftpSource }
  /** A real file the resolver vouches for (it may lie outside any served root, e.g. /usr/lib/ipxe). */
  | { kind: 'file'; path: string }
  | { kind: 'not-found' }
  /** Refused with TFTP error 2; `reason` goes to the server's log hook, never to the client. */
  | { kind: 'denied'; reason: string };

export interface TftpResolver {
  resolve(request: TftpReadRequest): Promise<TftpResolution>;
}

/** Serves bytes already in memory (small generated files, cached files). */
export function bufferSource(data: Uint8Array): TftpSource {
  return {
    size: data.length,
    contents: Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength),
    async read(target, targetOffset, length, position) {
      const end = Math.min(data.length, position + length);
      if (position >= end) return 0;
      target.set(data.subarray(position, end), targetOffset);
      return end - position;
    },
    async close() {},
  };
}

function fileSource(handle: fsPromises.FileHandle, stat: BigIntStats): TftpSource {
  return {
    size: Number(stat.size),
    // Another inode is another file; a write changes ctime (and mtime, and maybe the size).
    cacheKey: { id: `${stat.dev}:${stat.ino}`, version: `${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}` },
    async read(target, targetOffset, length, position) {
      const { bytesRead } = await handle.read(target, targetOffset, length, position);
      return bytesRead;
    },
    close: () => handle.close(),
  };
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

/**
 * Opens a regular file for reading. With `confineTo`, the file actually opened (after every
 * symlink) must lie inside that real directory; the check reads /proc/self/fd after the
 * open, so a link swapped in between a check and the open cannot escape (Linux only).
 */
export async function openRegularFile(path: string, confineTo?: string): Promise<Exclude<TftpResolution, { kind: 'file' }>> {
  let handle: fsPromises.FileHandle;
  try {
    // O_NONBLOCK: a FIFO planted in the root must not hang the open.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') return { kind: 'not-found' };
    if (code === 'EACCES' || code === 'EPERM' || code === 'ELOOP') return { kind: 'denied', reason: `cannot open: ${code}` };
    throw error;
  }
  try {
    if (confineTo !== undefined) {
      const opened = await readlink(`/proc/self/fd/${handle.fd}`);
      if (!opened.startsWith(confineTo.endsWith(sep) ? confineTo : confineTo + sep)) {
        await handle.close();
        return { kind: 'denied', reason: `resolves to ${opened}, outside the root ${confineTo}` };
      }
    }
    const stat = await handle.stat({ bigint: true });
    if (!stat.isFile()) {
      await handle.close();
      return { kind: 'denied', reason: 'not a regular file' };
    }
    return { kind: 'source', source: fileSource(handle, stat) };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * The path segments of a requested name inside a served root, or a refusal. A leading `/`
 * (many ROMs send absolute names) means the root; `\` separates too, as Windows-style boot
 * loaders send it; any `..` is refused outright rather than resolved.
 */
export function confinedSegments(requested: string): { ok: true; segments: string[] } | { ok: false; reason: string } {
  const segments = requested.split(/[/\\]+/).filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) return { ok: false, reason: 'path climbs with ..' };
  if (segments.length === 0) return { ok: false, reason: 'names the root itself' };
  return { ok: true, segments };
}

/** The default resolver: files under `root`, symlinks allowed only while they stay inside it. */
export function directoryResolver(root: string): TftpResolver {
  return {
    async resolve({ path }) {
      const confined = confinedSegments(path);
      if (!confined.ok) return { kind: 'denied', reason: confined.reason };
      const realRoot = await realpath(root);
      return openRegularFile(join(realRoot, ...confined.segments), realRoot);
    },
  };
}
