// Imports a disk file (raw, or qcow2 through qemu-img) as a disk-only image: the store keeps it
// zstd-compressed with its raw size and sha256, and a deploy writes it to nodes' disks like a
// built image's disk. Shoal confirms every install by the installed OS's hello, and that OS gets
// its boot token through the GRUB environment block on the disk's EFI system partition
// (`/shoal/grubenv`, as `build-disk` makes it), so a disk without exactly one such block there is
// refused: it would be written and then never heard from.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, openSync, readSync, statSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { z } from 'zod';
import { imageDigest } from '../../src/contracts/image-digest.js';

const execFileP = promisify(execFile);
const MIB = 1024 * 1024;
const SECTOR = 512;
export const BOOT_ENV_SIGNATURE = '# GRUB Environment Block\n';
const BOOT_ENV_SIZE = 1024;
// The EFI system partition's type GUID, C12A7328-F81F-11D2-BA4B-00A0C93EC93B, as GPT stores it (mixed-endian).
const ESP_TYPE = Buffer.from('28732ac11ff8d211ba4b00a0c93ec93b', 'hex');

export type DiskFileFormat = 'raw' | 'qcow2';

/** The disk file cannot be imported as given; the message says why. */
export class DiskImportError extends Error {}

/**
 * What the first sectors of `path` say it is: a qcow2 file, a raw disk (an MBR or protective-MBR
 * signature), or neither (undefined: a container image archive, say).
 */
export function diskFileFormat(path: string): DiskFileFormat | undefined {
  let fd: number;
  try {
    if (!statSync(path).isFile()) return undefined;
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(SECTOR);
    const read = readSync(fd, head, 0, SECTOR, 0);
    if (read >= 4 && head.subarray(0, 4).equals(Buffer.from('QFI\xfb', 'latin1'))) return 'qcow2';
    if (read === SECTOR && head[510] === 0x55 && head[511] === 0xaa) return 'raw';
    return undefined;
  } finally {
    closeSync(fd);
  }
}

const QemuImgInfo = z.object({
  format: z.literal('qcow2'),
  'virtual-size': z.number().int().positive(),
  'backing-filename': z.string().optional(),
  'format-specific': z.object({ data: z.object({ 'data-file': z.string().optional() }).passthrough().optional() }).passthrough().optional(),
});

/** Where the GRUB environment block of the disk's EFI system partition is: its byte offset in the raw disk. */
export async function findBootEnv(rawPath: string, rawSize: number): Promise<number> {
  const file = await open(rawPath, 'r');
  try {
    const read = async (offset: number, length: number) => {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    };
    const header = await read(SECTOR, 92);
    if (header.length < 92 || header.subarray(0, 8).toString('latin1') !== 'EFI PART') throw new DiskImportError('not a GPT disk: no GPT header at sector 1 (an EFI system partition with /shoal/grubenv is needed)');
    const entriesLba = Number(header.readBigUInt64LE(72));
    const entryCount = header.readUInt32LE(80);
    const entrySize = header.readUInt32LE(84);
    if (entrySize < 128 || entrySize > 4096 || entryCount > 1024 || (entriesLba + 1) * SECTOR > rawSize) throw new DiskImportError(`the GPT header is damaged (entries at LBA ${entriesLba}, ${entryCount} of ${entrySize} bytes)`);
    const entries = await read(entriesLba * SECTOR, entryCount * entrySize);
    const esps: Array<{ first: number; last: number }> = [];
    for (let i = 0; i + entrySize <= entries.length; i += entrySize) {
      if (!entries.subarray(i, i + 16).equals(ESP_TYPE)) continue;
      esps.push({ first: Number(entries.readBigUInt64LE(i + 32)), last: Number(entries.readBigUInt64LE(i + 40)) });
    }
    if (esps.length !== 1) throw new DiskImportError(`the disk has ${esps.length} EFI system partitions; one is needed, holding /shoal/grubenv`);
    const esp = esps[0]!;
    const start = esp.first * SECTOR;
    const end = Math.min((esp.last + 1) * SECTOR, rawSize);
    if (esp.last < esp.first || start >= rawSize) throw new DiskImportError(`the EFI system partition's range (LBA ${esp.first}–${esp.last}) is not inside the disk`);
    const found: number[] = [];
    const signature = Buffer.from(BOOT_ENV_SIGNATURE, 'latin1');
    for (let at = start; at < end; at += MIB) {
      const chunk = await read(at, Math.min(MIB, end - at));
      for (let i = 0; i + signature.length <= chunk.length; i += SECTOR) {
        if (chunk[i] === 0x23 && chunk.subarray(i, i + signature.length).equals(signature) && at + i + BOOT_ENV_SIZE <= end) found.push(at + i);
      }
    }
    if (found.length === 0) throw new DiskImportError('no GRUB environment block on the EFI system partition: Shoal passes the installed OS its boot token through /shoal/grubenv there, as disks made by build-disk have it (README "Installing to disk")');
    if (found.length > 1) throw new DiskImportError(`${found.length} GRUB environment blocks on the EFI system partition (at bytes ${found.join(', ')}): Shoal would not know which one the installed OS reads`);
    return found[0]!;
  } finally {
    await file.close();
  }
}

/** Counts and hashes what passes through. */
class Hashing extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    done(null, chunk);
  }
}

/** Compresses `rawPath` to `outPath` with zstd, hashing both sides in the one pass. */
async function compress(rawPath: string, outPath: string, rawSize: number, say: (line: string) => void): Promise<{ raw: { sha256: string; size: number }; stored: { sha256: string; size: number } }> {
  const child = spawn('zstd', ['-q', '-T0', '-3', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2000)));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => reject(new DiskImportError(error.code === 'ENOENT' ? 'zstd is not installed on the appliance (apt-get install zstd)' : `zstd could not start: ${error.message}`)));
    child.once('close', resolve);
  });
  const rawHash = new Hashing();
  const storedHash = new Hashing();
  let told = 0;
  rawHash.on('data', () => {
    const percent = Math.floor((rawHash.bytes / rawSize) * 10) * 10;
    if (percent > told) say(`compressed ${Math.round(rawHash.bytes / MIB)} of ${Math.round(rawSize / MIB)} MiB (${(told = percent)} %)`);
  });
  try {
    await Promise.all([
      pipeline(createReadStream(rawPath, { highWaterMark: MIB }), rawHash, child.stdin),
      pipeline(child.stdout, storedHash, createWriteStream(outPath)),
      exited.then((code) => {
        if (code !== 0) throw new DiskImportError(`zstd exited with ${code}: ${stderr.trim() || 'no message'}`);
      }),
    ]);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  if (rawHash.bytes !== rawSize) throw new DiskImportError(`the disk changed while it was read: ${rawHash.bytes} bytes, ${rawSize} before`);
  return { raw: { sha256: rawHash.hash.digest('hex'), size: rawHash.bytes }, stored: { sha256: storedHash.hash.digest('hex'), size: storedHash.bytes } };
}

async function qemuImg(args: string[]): Promise<string> {
  try {
    return (await execFileP('qemu-img', args, { maxBuffer: 1 << 20 })).stdout;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new DiskImportError('qemu-img is not installed on the appliance (apt-get install qemu-utils): it converts qcow2 files');
    throw new DiskImportError(`qemu-img ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

export interface DiskImportRequest {
  source: string;
  format: DiskFileFormat;
  name?: string | undefined;
  version?: string | undefined;
}

/**
 * Builds an image directory (image.json and disk.raw.zst) in `out` from the disk file; the store
 * then imports it and checks it again, like any other. qcow2 is converted to a sparse raw file first.
 */
export async function importDiskFile(request: DiskImportRequest, out: string, say: (line: string) => void): Promise<{ dir: string; ref: string }> {
  await mkdir(out, { recursive: true });
  let rawPath = request.source;
  if (request.format === 'qcow2') {
    const info = QemuImgInfo.safeParse(JSON.parse(await qemuImg(['info', '--output=json', '-f', 'qcow2', '--', request.source])));
    if (!info.success) throw new DiskImportError(`qemu-img info of ${request.source} is not what a qcow2 file gives: ${info.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    // A qcow2 file may name other files to read from: importing it would copy host files into the store.
    if (info.data['backing-filename'] !== undefined) throw new DiskImportError(`${request.source} has a backing file (${info.data['backing-filename']}): convert it to a standalone qcow2 or raw file first`);
    if (info.data['format-specific']?.data?.['data-file'] !== undefined) throw new DiskImportError(`${request.source} keeps its data in an external file: convert it to a standalone qcow2 or raw file first`);
    rawPath = join(out, 'disk.raw');
    say(`converting qcow2 (${Math.round(info.data['virtual-size'] / MIB)} MiB) to raw`);
    await qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', '--', request.source, rawPath]);
  }
  const rawSize = statSync(rawPath).size;
  if (rawSize === 0 || rawSize % MIB !== 0) throw new DiskImportError(`the disk is ${rawSize} bytes: a disk image must be a positive multiple of 1 MiB`);
  const bootEnvOffset = await findBootEnv(rawPath, rawSize);
  say(`GRUB environment block at byte ${bootEnvOffset} of the EFI system partition`);
  const file = 'disk.raw.zst';
  const { raw, stored } = await compress(rawPath, join(out, file), rawSize, say);
  const name = request.name ?? (basename(request.source).replace(/\.(qcow2|raw|img)$/i, '').toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '') || 'disk');
  const version = request.version ?? raw.sha256.slice(0, 12);
  const disk = { file, sha256: stored.sha256, size: stored.size, format: 'zstd' as const, rawSize, rawSha256: raw.sha256, bootEnv: { offset: bootEnvOffset, size: BOOT_ENV_SIZE } };
  const manifest = {
    name,
    version,
    arch: 'x86_64',
    disk,
    cmdline: '',
    digest: imageDigest({ disk: { rawSha256: raw.sha256, bootEnvOffset }, cmdline: '' }),
    builtFrom: { diskFile: { source: request.source, format: request.format } },
  };
  await writeFile(join(out, 'image.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir: out, ref: `${name}@${version}` };
}
