// Images that carry a disk image: the disk artifact's schema in both manifests, the store's
// import decompressing a zstd or gzip disk to check its raw size and sha256 (and storing nothing
// when they are wrong), and the images module serving the disk with Range and ETag. Disks are a
// few MiB made here with the zstd CLI and node:zlib.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseManifest, withDisk, type ImageManifest } from '../../images/manifest.js';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { imageDigest } from '../../src/contracts/image-digest.js';
import { ImageViewSchema } from '../../src/api/views.js';
import { createLogger } from '../../src/log.js';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { writeFakeImage } from '../../test/support/fake-image.js';
import { storeRefusal } from '../../test/support/store-refusal.js';
import { parseStoredManifest, type DiskArtifact, type StoredManifest } from './manifest.js';
import { createModule } from './module.js';
import { ImageStore, imageInfo } from './store.js';

const MIB = 1024 * 1024;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const noZstd = skipUnless('disk images compressed with the zstd CLI', requirements({ commands: ['zstd'] }));

/** A small "disk": 1 MiB of random bytes then zeros, as a built disk is mostly empty space. */
const rawDisk = (mib: number) => Buffer.concat([randomBytes(MIB), Buffer.alloc((mib - 1) * MIB)]);
const zstd = (raw: Buffer) => execFileSync('zstd', ['-q', '-c'], { input: raw, maxBuffer: 64 * MIB });

/** Writes `file` into the image directory and image.json with the disk and the digest that covers it. */
function addDisk(dir: string, manifest: StoredManifest, file: string, bytes: Buffer, disk: Omit<DiskArtifact, 'file' | 'sha256' | 'size'>): StoredManifest {
  writeFileSync(join(dir, file), bytes);
  const withIt = { ...manifest, disk: { file, sha256: sha256(bytes), size: bytes.length, ...disk } };
  withIt.digest = imageDigest({
    kernelSha256: manifest.kernel!.sha256,
    initrdSha256: manifest.initrd!.sha256,
    disk: { rawSha256: disk.rawSha256, bootEnvOffset: disk.bootEnv?.offset },
    cmdline: manifest.cmdline,
  });
  writeFileSync(join(dir, 'image.json'), `${JSON.stringify(withIt, null, 2)}\n`);
  return withIt;
}


describe('the disk artifact in image.json', () => {
  const k = 'a'.repeat(64);
  const i = 'b'.repeat(64);
  const raw = 'c'.repeat(64);
  const zst = 'd'.repeat(64);
  const base = {
    name: 'debian',
    version: '12',
    arch: 'x86_64',
    kernel: { file: 'vmlinuz', sha256: k, size: 10 },
    initrd: { file: 'initrd.img', sha256: i, size: 20 },
    cmdline: 'console=ttyS0',
    builtFrom: { busyboxPackage: { name: 'busybox-static', version: '1' }, kernelRelease: 'x', modules: [], sourceDateEpoch: 0 },
  };
  const goodDisk = { file: 'disk.raw.zst', sha256: zst, size: 1234, format: 'zstd', rawSize: 8 * MIB, rawSha256: raw, bootEnv: { offset: 3 * MIB, size: 1024 } };
  const manifestWith = (disk: Record<string, unknown>, digestDisk: { rawSha256: string; bootEnvOffset?: number } = { rawSha256: raw, bootEnvOffset: 3 * MIB }) =>
    JSON.stringify({ ...base, disk, digest: imageDigest({ kernelSha256: k, initrdSha256: i, disk: digestDisk, cmdline: base.cmdline }) });
  const problems = (disk: Record<string, unknown>) => {
    const text = manifestWith(disk);
    const built = (() => {
      try {
        parseManifest(text, 'image.json');
        return 'accepted';
      } catch (err) {
        return (err as Error).message;
      }
    })();
    const stored = (() => {
      try {
        parseStoredManifest(text, 'image.json');
        return 'accepted';
      } catch (err) {
        return (err as Error).message;
      }
    })();
    return { built, stored };
  };

  it('is accepted by both schemas, the same, with its digest checked by the store', () => {
    const text = manifestWith(goodDisk);
    expect(parseStoredManifest(text, 'image.json').disk).toEqual(goodDisk);
    expect(parseManifest(text, 'image.json').disk).toEqual(goodDisk);
    expect(problems({ ...goodDisk, bootEnv: undefined }).built).toBe('accepted');
    // The digest must cover the disk: one computed without it is refused.
    const noDiskDigest = JSON.stringify({ ...base, disk: goodDisk, digest: imageDigest({ kernelSha256: k, initrdSha256: i, cmdline: base.cmdline }) });
    expect(() => parseStoredManifest(noDiskDigest, 'image.json')).toThrow(/digest: does not match the kernel, initrd, rootfs, disk and cmdline/);
  });

  // Each: what is wrong, the change, the field the error names, and what it says of it.
  it.each([
    ['a raw size that is not whole MiB', { rawSize: 8 * MIB + 512 }, 'rawSize', /multiple of 1 MiB \(1048576 bytes\): disk images are MiB-aligned/],
    ['a raw size of zero', { rawSize: 0 }, 'rawSize', /./],
    ['an unknown format', { format: 'xz' }, 'format', /./],
    ['a boot environment block that is not 1024 bytes', { bootEnv: { offset: 3 * MIB, size: 512 } }, 'bootEnv.size', /exactly 1024 bytes, a GRUB environment block/],
    ['a boot environment block past the end of the disk', { bootEnv: { offset: 8 * MIB - 512, size: 1024 } }, 'bootEnv.offset', /the block ends at 8389120, past the disk's 8388608 bytes/],
    ['a boot environment block at offset 0', { bootEnv: { offset: 0, size: 1024 } }, 'bootEnv.offset', /./],
    ['a fractional offset', { bootEnv: { offset: 1.5, size: 1024 } }, 'bootEnv.offset', /./],
    ['a raw disk whose two descriptions differ', { format: 'raw' }, 'rawSha256', /a raw disk has size = rawSize and sha256 = rawSha256/],
    ['a field the format does not have', { compression: 'zstd' }, '', /compression/],
    ['a path for a file name', { file: '../disk.raw' }, 'file', /./],
    ['no raw sha256', { rawSha256: undefined }, 'rawSha256', /./],
  ])('is refused by both schemas with %s', (_what, change, field, message) => {
    const { built, stored } = problems({ ...goodDisk, ...change });
    for (const error of [built, stored]) {
      expect(error).toMatch(/^image\.json: not an image manifest: /);
      expect(error).toContain(field ? `disk.${field}` : 'disk');
      expect(error).toMatch(message);
    }
  });

  it('needs a file name of its own in the store', () => {
    expect(problems({ ...goodDisk, file: 'vmlinuz' }).stored).toMatch(/kernel, initrd, rootfs and disk need distinct file names/);
  });

  it('is what withDisk adds to a built manifest, with a digest the store recomputes', () => {
    const built = parseManifest(JSON.stringify({ ...base, digest: imageDigest({ kernelSha256: k, initrdSha256: i, cmdline: base.cmdline }) }), 'image.json');
    const disk = { ...goodDisk, format: 'zstd' as const, bootEnv: { offset: 3 * MIB, size: 1024 as const } };
    const added: ImageManifest = withDisk(built, disk);
    expect(added.digest).not.toBe(built.digest);
    expect(Object.keys(added)).toEqual(['name', 'version', 'arch', 'kernel', 'initrd', 'disk', 'cmdline', 'digest', 'builtFrom']);
    expect(parseStoredManifest(JSON.stringify(added), 'image.json').disk).toEqual(disk);
  });
});

describe('the image store with disk images', () => {
  let work: string;
  let root: string;

  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'shoal-image-disk-'));
    root = join(work, 'store');
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  const image = (version: string) => writeFakeImage(join(work, `src-${version}`), { name: 'debian', version, kernel: randomBytes(5000), initrd: randomBytes(3000) });

  const expectNothingStored = (store: ImageStore) => {
    expect(store.list()).toEqual([]);
    expect(readdirSync(join(root, 'blobs', 'sha256'))).toEqual([]);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(existsSync(join(root, 'index.json'))).toBe(false);
  };

  it.skipIf(noZstd)('imports a zstd disk, storing the compressed file and telling where the raw one is served', async () => {
    const raw = rawDisk(3);
    const compressed = zstd(raw);
    const source = image('1');
    const manifest = addDisk(source.dir, source.manifest, 'disk.raw.zst', compressed, { format: 'zstd', rawSize: raw.length, rawSha256: sha256(raw), bootEnv: { offset: 2 * MIB, size: 1024 } });
    const store = await ImageStore.open(root);
    const { image: stored, created } = await store.importFrom(source.dir);
    expect(created).toBe(true);
    expect(stored.manifest.digest).toBe(manifest.digest);
    expect(readFileSync(store.blobPath(sha256(compressed)))).toEqual(compressed);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(imageInfo((await ImageStore.open(root)).get('debian@1')!).disk).toEqual({
      sha256: sha256(compressed),
      size: compressed.length,
      path: '/images/debian/1/disk.raw.zst',
      format: 'zstd',
      rawSize: 3 * MIB,
      rawSha256: sha256(raw),
      bootEnv: { offset: 2 * MIB, size: 1024 },
    });
  });

  it('imports a gzip disk and an uncompressed one', async () => {
    const raw = rawDisk(2);
    const gz = image('1');
    addDisk(gz.dir, gz.manifest, 'disk.raw.gz', gzipSync(raw), { format: 'gzip', rawSize: raw.length, rawSha256: sha256(raw) });
    const plain = image('2');
    addDisk(plain.dir, plain.manifest, 'disk.raw', raw, { format: 'raw', rawSize: raw.length, rawSha256: sha256(raw) });
    const store = await ImageStore.open(root);
    expect((await store.importFrom(gz.dir)).created).toBe(true);
    expect((await store.importFrom(plain.dir)).created).toBe(true);
    expect(store.list().map((i) => i.manifest.disk?.format)).toEqual(['gzip', 'raw']);
  });

  it.skipIf(noZstd)('refuses a zstd file that does not decompress, though its own sha256 matches, and stores nothing', async () => {
    const raw = rawDisk(3);
    const corrupted = zstd(raw);
    // Inside the stored (random, incompressible) block: zstd finds it by the frame's checksum.
    corrupted[5000] = corrupted[5000]! ^ 0x01;
    const source = image('1');
    addDisk(source.dir, source.manifest, 'disk.raw.zst', corrupted, { format: 'zstd', rawSize: raw.length, rawSha256: sha256(raw) });
    const store = await ImageStore.open(root);
    const err = await storeRefusal(store.importFrom(source.dir));
    expect(err.kind).toBe('verification');
    expect(err.message).toMatch(/^disk disk\.raw\.zst does not decompress as zstd: not zstd data, or cut short: zstd exited with 1: .+/);
    expectNothingStored(store);
  });

  it('refuses a gzip file cut short, and stores nothing', async () => {
    const raw = rawDisk(2);
    const cut = gzipSync(raw).subarray(0, 3000);
    const source = image('1');
    addDisk(source.dir, source.manifest, 'disk.raw.gz', cut, { format: 'gzip', rawSize: raw.length, rawSha256: sha256(raw) });
    const store = await ImageStore.open(root);
    const err = await storeRefusal(store.importFrom(source.dir));
    expect(err.message).toMatch(/^disk disk\.raw\.gz does not decompress as gzip: not gzip data, or cut short: /);
    expectNothingStored(store);
  });

  it.skipIf(noZstd)('refuses a disk whose raw bytes are not the rawSha256, naming both, and stores nothing', async () => {
    const raw = rawDisk(3);
    const compressed = zstd(raw);
    const said = sha256(rawDisk(3));
    const source = image('1');
    addDisk(source.dir, source.manifest, 'disk.raw.zst', compressed, { format: 'zstd', rawSize: raw.length, rawSha256: said });
    const store = await ImageStore.open(root);
    const err = await storeRefusal(store.importFrom(source.dir));
    expect(err.kind).toBe('verification');
    expect(err.message).toBe(`disk disk.raw.zst decompresses to bytes with sha256 ${sha256(raw)}; the manifest's rawSha256 says ${said}`);
    expectNothingStored(store);
  });

  it.skipIf(noZstd)('refuses a disk whose raw size is not the rawSize, larger or smaller, and stores nothing', async () => {
    const raw = rawDisk(3);
    const compressed = zstd(raw);
    const store = await ImageStore.open(root);
    const larger = image('1');
    addDisk(larger.dir, larger.manifest, 'disk.raw.zst', compressed, { format: 'zstd', rawSize: 4 * MIB, rawSha256: sha256(raw) });
    expect((await storeRefusal(store.importFrom(larger.dir))).message).toBe(`disk disk.raw.zst decompresses to ${3 * MIB} bytes; the manifest's rawSize says ${4 * MIB}`);
    expectNothingStored(store);
    // Said smaller than it is: reading stops past the size said, and zstd is stopped.
    const smaller = image('2');
    addDisk(smaller.dir, smaller.manifest, 'disk.raw.zst', compressed, { format: 'zstd', rawSize: 1 * MIB, rawSha256: sha256(raw) });
    expect((await storeRefusal(store.importFrom(smaller.dir))).message).toMatch(new RegExp(`^disk disk\\.raw\\.zst decompresses to more than ${MIB} bytes \\(stopped at \\d+\\); the manifest's rawSize says ${MIB}$`));
    expectNothingStored(store);
  });
});

describe.skipIf(noZstd)('the images module serving a disk', { timeout: 60_000 }, () => {
  let work: string;
  let appliance: Appliance;
  const raw = rawDisk(3);
  let compressed: Buffer;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'shoal-image-disk-serve-'));
    compressed = zstd(raw);
    const source = writeFakeImage(join(work, 'debian@1'), { name: 'debian', version: '1', kernel: randomBytes(5000), initrd: randomBytes(3000) });
    addDisk(source.dir, source.manifest, 'disk.raw.zst', compressed, { format: 'zstd', rawSize: raw.length, rawSha256: sha256(raw) });
    const config = loadConfig(undefined, { dataDir: join(work, 'data'), api: { listen: '127.0.0.1', port: 0 } });
    appliance = await Appliance.start(config, { modules: [createModule({ import: [source.dir] })], log: createLogger('silent') });
  });

  afterAll(async () => {
    await appliance?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('serves the stored file whole and by range, with its sha256 as the ETag', async () => {
    const url = `${appliance.url}/images/debian/1/disk.raw.zst`;
    const whole = await fetch(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('etag')).toBe(`"${sha256(compressed)}"`);
    expect(Buffer.from(await whole.arrayBuffer())).toEqual(compressed);
    const part = await fetch(url, { headers: { range: 'bytes=100-199' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${compressed.length}`);
    expect(Buffer.from(await part.arrayBuffer())).toEqual(compressed.subarray(100, 200));
  });

  it('lists the disk with the image, its size counted', async () => {
    const res = await fetch(`${appliance.url}/api/v1/images/debian@1`, { headers: { authorization: `Bearer ${appliance.token}` } });
    // The view schema the CLI and the web UI read it with takes the disk.
    const view = ImageViewSchema.parse(await res.json());
    expect(view.disk).toMatchObject({ path: '/images/debian/1/disk.raw.zst', rawSize: raw.length });
    expect(view.size).toBe(5000 + 3000 + compressed.length);
  });
});
