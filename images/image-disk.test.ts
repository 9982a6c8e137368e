// A built disk added to an image directory (build-disk.ts --image) on hand-made files: image.json
// gains the disk and a digest covering it, the image store imports the result, and a disk from
// another root tree, or an image not built from a recipe, is refused with image.json untouched.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '../modules/images/store.js';
import { requirements, skipUnless } from '../test/support/environment.js';
import { addDiskToImageDir, type BuiltDisk } from './image-disk.js';
import { imageDigest } from './manifest.js';

const MIB = 1024 * 1024;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const noZstd = skipUnless('disk images compressed with the zstd CLI', requirements({ commands: ['zstd'] }));
const TREE = 'e'.repeat(64);

describe.skipIf(noZstd)('addDiskToImageDir', () => {
  let work: string;
  let imageDir: string;
  let disk: BuiltDisk;

  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'shoal-image-disk-add-'));
    imageDir = join(work, 'debian@12');
    mkdirSync(imageDir);
    const file = (name: string, bytes: Buffer) => {
      writeFileSync(join(imageDir, name), bytes);
      return { file: name, sha256: sha256(bytes), size: bytes.length };
    };
    const kernel = file('vmlinuz', randomBytes(4000));
    const initrd = file('initrd.img', randomBytes(3000));
    const rootfs = file('root.squashfs', randomBytes(2000));
    const cmdline = 'console=ttyS0';
    const manifest = {
      name: 'debian',
      version: '12',
      arch: 'x86_64',
      kernel,
      initrd,
      rootfs,
      cmdline,
      digest: imageDigest({ kernelSha256: kernel.sha256, initrdSha256: initrd.sha256, rootfsSha256: rootfs.sha256, cmdline }),
      builtFrom: {
        busyboxPackage: { name: 'busybox-static', version: '1' },
        kernelRelease: '6.1.0-x-amd64',
        modules: [],
        sourceDateEpoch: 0,
        recipe: { file: 'debian-12.json', suite: 'bookworm', mirror: 'http://deb.debian.org/debian', treeKey: TREE },
      },
    };
    writeFileSync(join(imageDir, 'image.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const diskDir = join(work, 'disk');
    mkdirSync(diskDir);
    const raw = Buffer.concat([randomBytes(MIB), Buffer.alloc(MIB)]);
    writeFileSync(join(diskDir, 'disk.raw'), raw);
    execFileSync('zstd', ['-q', join(diskDir, 'disk.raw'), '-o', join(diskDir, 'disk.raw.zst')]);
    const zst = readFileSync(join(diskDir, 'disk.raw.zst'));
    disk = {
      raw: { path: join(diskDir, 'disk.raw'), size: raw.length, sha256: sha256(raw) },
      stored: { path: join(diskDir, 'disk.raw.zst'), size: zst.length, sha256: sha256(zst) },
      format: 'zstd',
      treeKey: TREE,
    };
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  it('adds the disk and a digest covering it, and the image store imports the directory', async () => {
    const before = JSON.parse(readFileSync(join(imageDir, 'image.json'), 'utf8'));
    const after = await addDiskToImageDir(imageDir, disk);
    expect(after.disk).toEqual({ file: 'disk.raw.zst', sha256: disk.stored.sha256, size: disk.stored.size, format: 'zstd', rawSize: 2 * MIB, rawSha256: disk.raw.sha256 });
    expect(after.digest).toBe(
      imageDigest({ kernelSha256: before.kernel.sha256, initrdSha256: before.initrd.sha256, rootfsSha256: before.rootfs.sha256, disk: { rawSha256: disk.raw.sha256 }, cmdline: before.cmdline }),
    );
    expect(JSON.parse(readFileSync(join(imageDir, 'image.json'), 'utf8'))).toEqual(after);
    expect(readdirSync(imageDir).sort()).toEqual(['disk.raw.zst', 'image.json', 'initrd.img', 'root.squashfs', 'vmlinuz']);
    const store = await ImageStore.open(join(work, 'store'));
    const { image } = await store.importFrom(imageDir);
    expect(image.manifest.disk?.rawSha256).toBe(disk.raw.sha256);
  });

  it('replaces a disk the image had, removing its file', async () => {
    await addDiskToImageDir(imageDir, disk);
    const after = await addDiskToImageDir(imageDir, { ...disk, stored: disk.raw, format: 'raw' });
    expect(after.disk?.file).toBe('disk.raw');
    expect(readdirSync(imageDir)).not.toContain('disk.raw.zst');
    expect((await (await ImageStore.open(join(work, 'store'))).importFrom(imageDir)).image.manifest.disk?.format).toBe('raw');
  });

  it('refuses a disk from another root tree, and an image not built from a recipe, leaving image.json as it was', async () => {
    const text = readFileSync(join(imageDir, 'image.json'), 'utf8');
    await expect(addDiskToImageDir(imageDir, { ...disk, treeKey: 'f'.repeat(64) })).rejects.toThrow(`was built from root tree ${TREE}, the disk from ${'f'.repeat(64)}`);
    const noRecipe = JSON.parse(text);
    delete noRecipe.builtFrom.recipe;
    writeFileSync(join(imageDir, 'image.json'), JSON.stringify(noRecipe));
    await expect(addDiskToImageDir(imageDir, disk)).rejects.toThrow('was not built from an OS recipe');
    expect(readdirSync(imageDir)).not.toContain('disk.raw.zst');
  });
});
