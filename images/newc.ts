// A writer for the "newc" cpio format, the only format the Linux initramfs unpacker reads
// (Documentation/driver-api/early-userspace/buffer-format.rst). Written here rather than
// shelling out to cpio so that the archive is byte-for-byte reproducible (fixed order,
// owners, times and inode numbers) and so that device nodes such as /dev/console can be
// added without root and without touching the build host's filesystem.

export type CpioEntry =
  | { kind: 'dir'; path: string; mode: number }
  | { kind: 'file'; path: string; mode: number; data: Buffer }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'char'; path: string; mode: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const NEWC_MAGIC = '070701';
const TRAILER = 'TRAILER!!!';

function hex8(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`cpio header field out of range: ${value}`);
  }
  return value.toString(16).padStart(8, '0');
}

/** Zero bytes that bring `length` up to the next multiple of 4, as newc requires after names and data. */
function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function validatePath(path: string): void {
  if (path === '' || path.startsWith('/') || path.endsWith('/') || path.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new Error(`cpio entry path must be relative and normalised (e.g. "bin/sh"), got ${JSON.stringify(path)}`);
  }
}

function record(name: string, fields: { ino: number; mode: number; nlink: number; mtime: number; rdevMajor: number; rdevMinor: number }, data: Buffer): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const header = Buffer.from(
    NEWC_MAGIC +
      hex8(fields.ino) +
      hex8(fields.mode) +
      hex8(0) + // uid: root
      hex8(0) + // gid: root
      hex8(fields.nlink) +
      hex8(fields.mtime) +
      hex8(data.length) +
      hex8(0) + // devmajor
      hex8(0) + // devminor
      hex8(fields.rdevMajor) +
      hex8(fields.rdevMinor) +
      hex8(nameBytes.length) +
      hex8(0), // check: only used by the "070702" crc format
    'ascii',
  );
  return Buffer.concat([header, nameBytes, pad4(header.length + nameBytes.length), data, pad4(data.length)]);
}

/**
 * Serialises entries into one newc archive. Entries are sorted by path (so parents come
 * before children and the caller's order does not matter), owned by root, stamped with
 * `mtime`, and numbered 1..n; the same entries always give the same bytes.
 */
export function writeNewc(entries: readonly CpioEntry[], mtime: number): Buffer {
  const seen = new Set<string>();
  for (const entry of entries) {
    validatePath(entry.path);
    if (seen.has(entry.path)) throw new Error(`cpio entry ${entry.path} given twice`);
    seen.add(entry.path);
  }
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts: Buffer[] = [];
  sorted.forEach((entry, index) => {
    const common = { ino: index + 1, mtime, rdevMajor: 0, rdevMinor: 0 };
    switch (entry.kind) {
      case 'dir':
        parts.push(record(entry.path, { ...common, mode: S_IFDIR | (entry.mode & 0o7777), nlink: 2 }, Buffer.alloc(0)));
        break;
      case 'file':
        parts.push(record(entry.path, { ...common, mode: S_IFREG | (entry.mode & 0o7777), nlink: 1 }, entry.data));
        break;
      case 'symlink':
        parts.push(record(entry.path, { ...common, mode: S_IFLNK | 0o777, nlink: 1 }, Buffer.from(entry.target, 'utf8')));
        break;
      case 'char':
        parts.push(
          record(entry.path, { ...common, mode: S_IFCHR | (entry.mode & 0o7777), nlink: 1, rdevMajor: entry.major, rdevMinor: entry.minor }, Buffer.alloc(0)),
        );
        break;
    }
  });
  parts.push(record(TRAILER, { ino: 0, mode: 0, nlink: 1, mtime: 0, rdevMajor: 0, rdevMinor: 0 }, Buffer.alloc(0)));
  return Buffer.concat(parts);
}
