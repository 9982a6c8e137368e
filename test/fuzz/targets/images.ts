// Image uploads as a hostile client could send them to the tar reader: entries named `../x`,
// `/etc/x` or through a pax or ustar-prefix path, symlinks and hard links out of the root,
// device files and fifos, GNU long names, global headers, gzip bombs (the reader takes plain
// tar only), and byte damage with the header checksum repaired so it reaches the fields. Each is
// unpacked into a fresh staging directory inside a sandbox; after it, the sandbox must hold only
// that directory, and the directory only regular files with plain names.
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { extractFlatTar, TarError } from '../../../modules/images/tar.js';
import { classifyAsync, type FuzzTarget, type Gen } from '../kit.js';

const PLAIN_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const MAX_BYTES = 1024 * 1024;

const NAMES = ['image.json', 'vmlinuz', 'initrd.img', 'root.squashfs', '../escape', '../../etc/cron.d/x', '/etc/passwd', '/tmp/x', 'a/../../x', './image.json', '.', '..', '', 'dir/file', 'image.json/', '.hidden', 'x\u0000y', 'ü', 'a'.repeat(100), 'C:\\x', '\\..\\x'];
const TYPES = ['0', '0', '0', '\0', '1', '2', '3', '4', '5', '6', '7', 'g', 'x', 'L', 'K', 'S', 'V', 'M', 'Z'];
const LINK_TARGETS = ['/etc/passwd', '../../outside', 'image.json', '/', ''];

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

export function sealChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  const sum = block.reduce((s, b) => s + b, 0);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

function header(g: Gen, name: string, size: number, type: string, prefix = ''): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, 'utf8');
  block.write('0000644\0', 100);
  block.write(octal(0, 8), 108);
  block.write(octal(0, 8), 116);
  block.write(g.chance(0.05) ? g.pick(['77777777777\0', '-1\0', 'zzzz\0', '\x80\0\0\0\0\0\0\0\0\0\0\x01']) : octal(size, 12), 124, 'latin1');
  block.write(octal(0, 12), 136);
  block.write(type, 156, 'latin1');
  block.write(g.pick(LINK_TARGETS), 157, 100);
  block.write(g.bool() ? 'ustar\x0000' : 'ustar  \0', 257, 'latin1');
  if (prefix) block.write(prefix, 345, 155);
  sealChecksum(block);
  return block;
}

function pax(g: Gen, records: Record<string, string>): Buffer[] {
  let body = '';
  for (const [key, value] of Object.entries(records)) {
    const core = ` ${key}=${value}\n`;
    let length = core.length + 1;
    while (String(length).length + core.length !== length) length = String(length).length + core.length;
    body += g.chance(0.1) ? `${length + g.int(5) - 2}${core}` : `${length}${core}`;
  }
  const data = Buffer.from(body);
  return [header(g, 'PaxHeader', data.length, 'x'), data, Buffer.alloc((512 - (data.length % 512)) % 512)];
}

/** A tar of 1-4 entries, half of them what a real image holds, the rest hostile names and types. */
export function archive(g: Gen): Buffer {
  const parts: Buffer[] = [];
  const entries = 1 + g.int(4);
  for (let i = 0; i < entries; i++) {
    // Half the entries are what a real image holds, so whole archives get through too.
    const name = g.bool() ? g.pick(NAMES.slice(0, 4)) : g.pick(NAMES);
    const type = g.bool() ? '0' : g.pick(TYPES);
    const data = type === '0' || type === '\0' || type === 'L' ? (type === 'L' ? Buffer.from('../../long/escape\0') : g.bytes(g.int(1500))) : Buffer.alloc(0);
    if (g.chance(0.2)) parts.push(...pax(g, { path: g.pick([...NAMES, '../../pax-escape']), ...(g.chance(0.3) ? { size: g.pick(['0', '12', '-1', 'NaN', '1e30', '0x10', String(data.length)]) } : {}) }));
    const prefix = g.chance(0.1) ? g.pick(['..', '/etc', 'sub', '../..']) : '';
    parts.push(header(g, name, data.length, type, prefix), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (g.chance(0.9)) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

function upload(g: Gen, gzipBomb: Buffer): Buffer {
  switch (g.int(10)) {
    case 0:
      return gzipBomb;
    case 1:
      return gzipSync(archive(g));
    case 2: // damage anywhere: mostly a checksum refusal
      return g.mutateBytes(archive(g));
    case 3: {
      // damage a header field and repair the checksum so the damage reaches the parser
      const tar = archive(g);
      if (tar.length >= 512) {
        for (let i = 0; i < 1 + g.int(4); i++) tar[g.pick([0, 100, 124, 130, 135, 156, 157, 257, 345]) + g.int(12)] = g.int(256);
        sealChecksum(tar.subarray(0, 512));
      }
      return tar;
    }
    default:
      return archive(g);
  }
}

/** Delivers the bytes in uneven chunks, as a socket would. */
function chunked(g: Gen, bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const size = 1 + g.int(g.bool() ? 700 : 5000);
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return Readable.from(chunks);
}

export const imagesFuzzTarget: FuzzTarget = {
  name: 'image tar',
  async open() {
    const outer = mkdtempSync(join(tmpdir(), 'shoal-tar-fuzz-'));
    const sandbox = join(outer, 'sandbox');
    mkdirSync(sandbox);
    // 64 MiB of zeros in 64 kB: the reader must refuse it without inflating it.
    const gzipBomb = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
    let n = 0;
    return {
      async one(g) {
        const staging = join(sandbox, `staging-${n++}`);
        mkdirSync(staging);
        const outcome = await classifyAsync(() => extractFlatTar(chunked(g, upload(g, gzipBomb)), staging, MAX_BYTES), (error) => error instanceof TarError);
        const outside = [...readdirSync(outer).filter((e) => e !== 'sandbox'), ...readdirSync(sandbox).filter((e) => e !== `staging-${n - 1}`)];
        if (outside.length > 0) throw new Error(`the archive wrote outside its directory: ${outside.join(', ')}`);
        for (const entry of readdirSync(staging)) {
          if (!PLAIN_NAME.test(entry) || !lstatSync(join(staging, entry)).isFile()) throw new Error(`the archive left ${JSON.stringify(entry)}, not a plain regular file`);
        }
        rmSync(staging, { recursive: true, force: true });
        return outcome;
      },
      async close() {
        rmSync(outer, { recursive: true, force: true });
      },
    };
  },
};
