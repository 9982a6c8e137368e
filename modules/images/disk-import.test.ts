// Importing a disk file as a disk-only image: small GPT disks made here with sfdisk, mkfs.vfat and
// mtools (an ESP holding /shoal/grubenv, as build-disk makes it), imported raw and as qcow2
// (qemu-img), stored, and refused with the reason when the boot environment block is missing or
// doubled, the size is not whole MiB, or a qcow2 file reads from a backing file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { grubEnvBlock } from '../../images/disk-image.js';
import { imageDigest } from '../../src/contracts/image-digest.js';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { GPT_DISK_TOOLS, gptDisk } from '../../test/support/gpt-disk.js';
import { diskFileFormat, DiskImportError, findBootEnv, importDiskFile } from './disk-import.js';
import { ImportJobs, ImportRefusal, ImportUnavailable } from './imports.js';
import { ImageStore, imageInfo } from './store.js';

const MIB = 1024 * 1024;
const skip = skipUnless('disk file import', requirements({ commands: [...GPT_DISK_TOOLS, 'qemu-img', 'zstd'] }));

describe.skipIf(skip)('disk file import', () => {
  let work: string;
  let store: ImageStore;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'shoal-disk-import-'));
    store = await ImageStore.open(join(work, 'store'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const disk = (name: string, esp: Record<string, Buffer>) => gptDisk(join(work, name), { esp });

  it('tells a raw disk and a qcow2 file from other files by their first bytes', () => {
    const raw = disk('kind.raw', { 'shoal/grubenv': grubEnvBlock() });
    const qcow2 = join(work, 'kind.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    const text = join(work, 'kind.txt');
    writeFileSync(text, 'not a disk\n');
    expect([diskFileFormat(raw), diskFileFormat(qcow2), diskFileFormat(text), diskFileFormat(work), diskFileFormat(join(work, 'absent'))]).toEqual(['raw', 'qcow2', undefined, undefined, undefined]);
  });

  it('imports a raw disk as a disk-only image: zstd-stored, its raw sha256 and its ESP\'s boot environment block recorded', async () => {
    const raw = disk('site.raw', { 'EFI/BOOT/BOOTX64.EFI': Buffer.alloc(3000, 1), 'shoal/grubenv': grubEnvBlock() });
    const lines: string[] = [];
    const built = await importDiskFile({ source: raw, format: 'raw', name: 'site', version: '1' }, join(work, 'out-raw'), (l) => lines.push(l));
    expect(built.ref).toBe('site@1');
    const { image, created } = await store.importFrom(built.dir, built.ref);
    expect(created).toBe(true);
    const rawSha256 = execFileSync('sha256sum', [raw], { encoding: 'utf8' }).split(' ')[0]!;
    const m = image.manifest;
    expect(m.kernel).toBeUndefined();
    expect(m.disk).toMatchObject({ format: 'zstd', rawSize: 8 * MIB, rawSha256 });
    // The block is where the disk holds it: its bytes there are the header mcopy put on the ESP.
    const at = m.disk!.bootEnv!.offset;
    expect(execFileSync('dd', [`if=${raw}`, 'bs=1', `skip=${at}`, 'count=24', 'status=none'], { encoding: 'latin1' })).toBe('# GRUB Environment Block');
    expect(at).toBeGreaterThanOrEqual(2048 * 512);
    expect(at).toBeLessThan(10240 * 512);
    expect(m.digest).toBe(imageDigest({ disk: { rawSha256, bootEnvOffset: at }, cmdline: '' }));
    const info = imageInfo(image);
    expect(info.kernel).toBeUndefined();
    expect(info.disk?.path).toBe('/images/site/1/disk.raw.zst');
    expect(lines.some((l) => l.startsWith('GRUB environment block at byte'))).toBe(true);
  });

  it('imports a qcow2 file through qemu-img to the same raw bytes, named by the file and the raw digest by default', async () => {
    const raw = disk('golden.raw', { 'shoal/grubenv': grubEnvBlock() });
    const qcow2 = join(work, 'Golden.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    const built = await importDiskFile({ source: qcow2, format: 'qcow2' }, join(work, 'out-qcow2'), () => {});
    const rawSha256 = execFileSync('sha256sum', [raw], { encoding: 'utf8' }).split(' ')[0]!;
    expect(built.ref).toBe(`golden@${rawSha256.slice(0, 12)}`);
    const { image } = await store.importFrom(built.dir, built.ref);
    expect(image.manifest.disk?.rawSha256).toBe(rawSha256);
  });

  it('refuses a disk without the block, with two, of a size that is not whole MiB, without GPT, or a qcow2 with a backing file', async () => {
    const none = disk('none.raw', { 'EFI/BOOT/BOOTX64.EFI': Buffer.alloc(100, 1) });
    await expect(importDiskFile({ source: none, format: 'raw' }, join(work, 'o1'), () => {})).rejects.toThrow(/no GRUB environment block on the EFI system partition/);
    const two = disk('two.raw', { 'shoal/grubenv': grubEnvBlock(), 'grub/grubenv': grubEnvBlock() });
    await expect(findBootEnv(two, 8 * MIB)).rejects.toThrow(/2 GRUB environment blocks on the EFI system partition \(at bytes \d+, \d+\)/);
    const odd = join(work, 'odd.raw');
    writeFileSync(odd, Buffer.alloc(MIB + 512));
    await expect(importDiskFile({ source: odd, format: 'raw' }, join(work, 'o2'), () => {})).rejects.toThrow(`the disk is ${MIB + 512} bytes: a disk image must be a positive multiple of 1 MiB`);
    const mbrOnly = join(work, 'mbr.raw');
    writeFileSync(mbrOnly, Buffer.alloc(2 * MIB));
    await expect(importDiskFile({ source: mbrOnly, format: 'raw' }, join(work, 'o3'), () => {})).rejects.toThrow(/not a GPT disk/);
    const base = disk('base.raw', { 'shoal/grubenv': grubEnvBlock() });
    const overlay = join(work, 'overlay.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, overlay]);
    const refused = importDiskFile({ source: overlay, format: 'qcow2' }, join(work, 'o4'), () => {});
    await expect(refused).rejects.toBeInstanceOf(DiskImportError);
    await expect(refused).rejects.toThrow(`has a backing file (${base})`);
  });

  it('queues a disk file given to the import jobs as a disk import, told apart from a container image by its first sector', async () => {
    const raw = disk('queued.raw', { 'shoal/grubenv': grubEnvBlock() });
    const qcow2 = join(work, 'queued.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    const stored: string[] = [];
    // No container importer: a disk import does not need the oci module.
    const jobs = new ImportJobs(store, () => undefined, (image) => stored.push(image.manifest.name));
    expect(() => jobs.start({ source: qcow2, kernelFrom: 'debian@12' })).toThrow(ImportRefusal);
    expect(() => jobs.start({ source: join(work, 'not-a-disk.tar') })).toThrow(ImportUnavailable);
    const job = jobs.start({ source: qcow2, name: 'queued@2' });
    await vi.waitFor(() => expect(jobs.get(job.id)?.state).toMatch(/succeeded|failed/), { timeout: 60_000, interval: 50 });
    expect(jobs.get(job.id)).toMatchObject({ state: 'succeeded', image: { ref: 'queued@2', created: true } });
    expect(jobs.get(job.id)!.progress).toContain('converting qcow2 (8 MiB) to raw');
    expect(stored).toEqual(['queued']);
    expect(store.get('queued@2')?.manifest.disk?.rawSha256).toBe(execFileSync('sha256sum', [raw], { encoding: 'utf8' }).split(' ')[0]);
  });
});
