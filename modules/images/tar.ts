// Unpacks an uploaded image: a tar of image.json and the files it names, flat (`tar -C DIR -cf -
// .` or `tar -cf - image.json vmlinuz initrd.img`). Only regular files with plain names are
// written, into a directory the caller made; anything else (links, devices, paths, global headers)
// refuses the upload, so an archive can never write outside that directory. The caller then
// imports the directory, which verifies every file against image.json.
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

const BLOCK = 512;
const PLAIN_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
/** image.json and at most four files (kernel, initrd, root image, disk image): anything more is not an image. */
const MAX_FILES = 5;
const MAX_PAX_BYTES = 64 * 1024;

export class TarError extends Error {}

/** Streams the tar in `body` into `dir`; resolves with the names written. */
export async function extractFlatTar(body: Readable, dir: string, maxBytes: number): Promise<string[]> {
  const written: string[] = [];
  let buffered: Buffer = Buffer.alloc(0);
  let total = 0;
  /** The entry whose data is being read: a file being written, or a pax header being collected. */
  let entry: { remaining: number; padding: number; out: FileHandle | Buffer[] } | undefined;
  let skipPadding = 0;
  /** `path` and `size` from a pax header, for the entry after it. */
  let pax: Map<string, string> | undefined;
  let ended = false;

  const finishEntry = async () => {
    const { out } = entry!;
    skipPadding = entry!.padding;
    entry = undefined;
    if (Array.isArray(out)) pax = parsePax(Buffer.concat(out));
    else await out.close();
  };

  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new TarError(`the upload is larger than ${maxBytes} bytes`);
      if (ended) continue; // zero blocks and padding after the end marker
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      for (;;) {
        if (entry) {
          const take = Math.min(entry.remaining, buffered.length);
          const data = buffered.subarray(0, take);
          if (Array.isArray(entry.out)) entry.out.push(Buffer.from(data));
          else await entry.out.write(data);
          buffered = buffered.subarray(take);
          entry.remaining -= take;
          if (entry.remaining > 0) break;
          await finishEntry();
        }
        if (skipPadding > 0) {
          const take = Math.min(skipPadding, buffered.length);
          buffered = buffered.subarray(take);
          skipPadding -= take;
          if (skipPadding > 0) break;
        }
        if (buffered.length < BLOCK) break;
        const header = buffered.subarray(0, BLOCK);
        buffered = buffered.subarray(BLOCK);
        if (header.every((b) => b === 0)) {
          ended = true;
          break;
        }
        const parsed = parseHeader(header, pax);
        pax = undefined;
        const padding = (BLOCK - (parsed.size % BLOCK)) % BLOCK;
        if (parsed.type === 'pax') {
          if (parsed.size > MAX_PAX_BYTES) throw new TarError(`a pax header of ${parsed.size} bytes is too large`);
          entry = { remaining: parsed.size, padding, out: [] };
          if (parsed.size === 0) await finishEntry();
          continue;
        }
        if (parsed.type === 'directory') {
          if (parsed.name !== '.' && parsed.name !== '') throw new TarError(`the archive holds a directory "${parsed.name}"; put image.json and its files at the top`);
          continue;
        }
        if (!PLAIN_NAME.test(parsed.name)) throw new TarError(`"${parsed.name}" is not a plain file name; put image.json and its files at the top of the archive`);
        if (written.includes(parsed.name)) throw new TarError(`the archive holds ${parsed.name} twice`);
        if (written.length === MAX_FILES) throw new TarError(`the archive holds more than ${MAX_FILES} files`);
        written.push(parsed.name);
        entry = { remaining: parsed.size, padding, out: await open(join(dir, parsed.name), 'wx', 0o600) };
        if (parsed.size === 0) await finishEntry();
      }
    }
  } finally {
    if (entry && !Array.isArray(entry.out)) await entry.out.close();
  }
  if (entry || !ended) throw new TarError('the archive ends early (truncated upload?)');
  return written;
}

/** pax records are "<length> <key>=<value>\n"; only path and size matter for plain files. */
function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    const length = Number(data.subarray(offset, space).toString('latin1'));
    if (space < 0 || !Number.isInteger(length) || length <= 0 || offset + length > data.length) throw new TarError('a pax header is malformed');
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    offset += length;
  }
  return records;
}

function parseHeader(header: Buffer, pax: Map<string, string> | undefined): { name: string; size: number; type: 'file' | 'directory' | 'pax' } {
  const field = (offset: number, length: number) => {
    const raw = header.subarray(offset, offset + length);
    const nul = raw.indexOf(0);
    return raw.subarray(0, nul < 0 ? length : nul).toString('utf8');
  };
  const checksum = parseInt(field(148, 8).trim(), 8);
  const computed = header.reduce((sum, b, i) => sum + (i >= 148 && i < 156 ? 0x20 : b), 0);
  if (checksum !== computed) throw new TarError('a tar header has a bad checksum; the upload is not a tar archive');
  // POSIX ustar keeps long names' leading part at 345; GNU tar ("ustar  ") keeps times there.
  const prefix = header.subarray(257, 263).toString('latin1') === 'ustar\0' ? field(345, 155) : '';
  const name = (pax?.get('path') ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100))).replace(/^(\.\/)+/, '').replace(/\/$/, '');
  const typeflag = String.fromCharCode(header[156]!);
  const sizeText = pax?.has('size') ? Number(pax.get('size')).toString(8) : field(124, 12).trim();
  if (!/^[0-7]+$/.test(sizeText)) throw new TarError(`${name}: size "${sizeText}" is not octal (archives over 8 GiB are not supported)`);
  const size = parseInt(sizeText, 8);
  if (typeflag === 'x') return { name, size, type: 'pax' };
  if (typeflag === '5') return { name, size: 0, type: 'directory' };
  if (typeflag !== '0' && typeflag !== '\0') throw new TarError(`${name || 'an entry'} is not a regular file (tar type "${typeflag}"); links, devices and global headers are refused`);
  return { name, size, type: 'file' };
}
