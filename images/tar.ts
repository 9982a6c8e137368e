// A writer for ustar archives (POSIX.1-1988 tar), the format of a node image's root filesystem:
// busybox tar in the initramfs unpacks it. Like newc.ts, and for the same reasons, it is written
// here rather than by the host's tar: entries are sorted by path, owned by root (uid/gid 0, no
// user or group names), stamped with one fixed time, so the same entries give the same bytes.
import type { CpioEntry } from './newc.js';

/** The same entries the initramfs is made of: dir, file, symlink, char device. */
export type TarEntry = CpioEntry;

const BLOCK = 512;

function octal(value: number, width: number): string {
  // width includes the terminating NUL.
  const text = value.toString(8).padStart(width - 1, '0');
  if (!Number.isInteger(value) || value < 0 || text.length > width - 1) throw new RangeError(`tar header field out of range: ${value}`);
  return `${text}\0`;
}

function header(entry: TarEntry, mtime: number): Buffer {
  const name = Buffer.from(entry.kind === 'dir' ? `${entry.path}/` : entry.path, 'utf8');
  // ustar's name field is 100 bytes; the prefix field could stretch that to 255, but no image path needs it.
  if (name.length > 100) throw new Error(`tar entry path longer than 100 bytes: ${entry.path}`);
  const target = entry.kind === 'symlink' ? Buffer.from(entry.target, 'utf8') : Buffer.alloc(0);
  if (target.length > 100) throw new Error(`tar symlink target longer than 100 bytes: ${entry.path} -> ${entry.kind === 'symlink' ? entry.target : ''}`);

  const block = Buffer.alloc(BLOCK);
  const put = (offset: number, text: string | Buffer) => (typeof text === 'string' ? Buffer.from(text, 'ascii') : text).copy(block, offset);
  const mode = entry.kind === 'symlink' ? 0o777 : entry.mode & 0o7777;
  const size = entry.kind === 'file' ? entry.data.length : 0;
  const type = { file: '0', symlink: '2', char: '3', dir: '5' }[entry.kind];
  put(0, name);
  put(100, octal(mode, 8));
  put(108, octal(0, 8)); // uid: root
  put(116, octal(0, 8)); // gid: root
  put(124, octal(size, 12));
  put(136, octal(mtime, 12));
  put(148, '        '); // the checksum is computed with its own field as spaces
  put(156, type);
  put(157, target);
  put(257, 'ustar\0');
  put(263, '00');
  // uname and gname stay empty: the numeric ids are the only owner.
  if (entry.kind === 'char') {
    put(329, octal(entry.major, 8));
    put(337, octal(entry.minor, 8));
  }
  let sum = 0;
  for (const byte of block) sum += byte;
  put(148, `${sum.toString(8).padStart(6, '0')}\0 `);
  return block;
}

/**
 * Serialises entries into one tar archive (uncompressed). Entries are sorted by path, so a
 * directory comes before what it holds and the caller's order does not matter.
 */
export function writeTar(entries: readonly TarEntry[], mtime: number): Buffer {
  const seen = new Set<string>();
  for (const entry of entries) {
    const path = entry.path;
    if (path === '' || path.startsWith('/') || path.endsWith('/') || path.split('/').some((p) => p === '' || p === '.' || p === '..')) {
      throw new Error(`tar entry path must be relative and normalised (e.g. "bin/sh"), got ${JSON.stringify(path)}`);
    }
    if (seen.has(path)) throw new Error(`tar entry ${path} given twice`);
    seen.add(path);
  }
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  for (const entry of sorted) {
    parts.push(header(entry, mtime));
    if (entry.kind === 'file') {
      parts.push(entry.data, Buffer.alloc((BLOCK - (entry.data.length % BLOCK)) % BLOCK));
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK)); // end of archive: two zero blocks
  return Buffer.concat(parts);
}
