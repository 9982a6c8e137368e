// The image store on its own: content addressing, verification on import, refusal of changed
// refs, atomic index, removal and clean-up, on hand-made image directories.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { imageDigest, parseManifest } from '../../images/manifest.js';
import { writeFakeImage } from '../../test/support/fake-image.js';
import { storeRefusal } from '../../test/support/store-refusal.js';
import { parseStoredManifest } from './manifest.js';
import { ImageStore, imageInfo } from './store.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('image store', () => {
  let work: string;
  let root: string;

  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'shoal-image-store-'));
    root = join(work, 'store');
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  const fake = (version: string, kernel = randomBytes(5000), initrd = randomBytes(3000)) =>
    writeFakeImage(join(work, `src-${version}-${randomBytes(4).toString('hex')}`), { name: 'compute', version, kernel, initrd });


  it('reads the manifests images/manifest.ts writes, and checks their digest', () => {
    const k = 'a'.repeat(64);
    const i = 'b'.repeat(64);
    const built = {
      name: 'compute',
      version: '1',
      arch: 'x86_64',
      kernel: { file: 'vmlinuz', sha256: k, size: 10 },
      initrd: { file: 'initrd.img', sha256: i, size: 20 },
      cmdline: 'console=ttyS0 quiet',
      digest: imageDigest({ kernelSha256: k, initrdSha256: i, cmdline: 'console=ttyS0 quiet' }),
      builtFrom: { kernelPackage: { name: 'linux-image-x', version: '1' }, busyboxPackage: { name: 'busybox-static', version: '1' }, kernelRelease: 'x', modules: [], sourceDateEpoch: 0 },
    };
    const text = JSON.stringify(built);
    expect(parseStoredManifest(text, 'image.json')).toEqual(parseManifest(text, 'image.json'));
    expect(() => parseStoredManifest(JSON.stringify({ ...built, cmdline: 'changed' }), 'image.json')).toThrow(/digest: does not match/);
    expect(() => parseStoredManifest(JSON.stringify({ ...built, kernel: { ...built.kernel, file: '../etc/passwd' } }), 'image.json')).toThrow(/kernel\.file/);
  });

  const SIGNED_PE = '/usr/lib/shim/shimx64.efi.signed';
  it.skipIf(!existsSync(SIGNED_PE))('holds a manifest that says its kernel is signed to it, and tells the catalog', async () => {
    const withClaim = (source: { dir: string; manifest: object }) => {
      writeFileSync(join(source.dir, 'image.json'), JSON.stringify({ ...source.manifest, kernelSigned: true }));
      return source.dir;
    };
    const store = await ImageStore.open(root);
    const garbage = await storeRefusal(store.importFrom(withClaim(fake('1'))));
    expect(garbage).toMatchObject({ kind: 'verification', message: expect.stringMatching(/says the kernel is signed, but it is no well-formed PE file: not a PE file/) });
    const unsignedPe = await storeRefusal(store.importFrom(withClaim(fake('2', readFileSync('/usr/lib/shim/shimx64.efi')))));
    expect(unsignedPe.message).toMatch(/carries no Authenticode signature/);
    const { image } = await store.importFrom(withClaim(fake('3', readFileSync(SIGNED_PE))));
    expect(imageInfo(image).kernelSigned).toBe(true);
    // A manifest without the field says nothing, and is taken as it is.
    expect(imageInfo((await store.importFrom(fake('4').dir)).image).kernelSigned).toBeUndefined();
  });

  it('stores each file as blobs/sha256/<hex> and the ref in an index that survives reopening', async () => {
    const kernel = randomBytes(5000);
    const initrd = randomBytes(3000);
    const source = fake('1', kernel, initrd);
    const store = await ImageStore.open(root);
    const { image, created } = await store.importFrom(source.dir);
    expect(created).toBe(true);
    expect(image.manifest.digest).toBe(source.manifest.digest);
    expect(readFileSync(join(root, 'blobs', 'sha256', sha256(kernel)))).toEqual(kernel);
    expect(readFileSync(join(root, 'blobs', 'sha256', sha256(initrd)))).toEqual(initrd);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);

    const info = imageInfo((await ImageStore.open(root)).get('compute@1')!);
    expect(info).toEqual({
      ref: 'compute@1',
      name: 'compute',
      version: '1',
      arch: 'x86_64',
      digest: source.manifest.digest,
      kernel: { sha256: sha256(kernel), size: 5000, path: '/images/compute/1/vmlinuz' },
      initrd: { sha256: sha256(initrd), size: 3000, path: '/images/compute/1/initrd.img' },
      cmdline: 'console=ttyS0 quiet',
    });
  });

  it('accepts the image.json path itself as the source', async () => {
    const source = fake('1');
    const store = await ImageStore.open(root);
    expect((await store.importFrom(join(source.dir, 'image.json'))).created).toBe(true);
  });

  it('refuses a file whose bytes differ from the manifest, and stores nothing', async () => {
    const source = fake('1');
    const initrdPath = join(source.dir, 'initrd.img');
    const corrupted = readFileSync(initrdPath);
    corrupted[1234] = corrupted[1234]! ^ 0x01;
    writeFileSync(initrdPath, corrupted);
    const store = await ImageStore.open(root);
    const err = await storeRefusal(store.importFrom(source.dir));
    expect(err.kind).toBe('verification');
    expect(err.message).toContain(`initrd initrd.img has sha256 ${sha256(corrupted)}; the manifest says ${source.manifest.initrd!.sha256}`);
    expect(store.list()).toEqual([]);
    expect(readdirSync(join(root, 'blobs', 'sha256'))).toEqual([]);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(existsSync(join(root, 'index.json'))).toBe(false);
  });

  it('refuses a file of the wrong size before reading it', async () => {
    const source = fake('1');
    writeFileSync(join(source.dir, 'vmlinuz'), randomBytes(4999));
    const err = await storeRefusal((await ImageStore.open(root)).importFrom(source.dir));
    expect(err.kind).toBe('verification');
    expect(err.message).toContain('kernel vmlinuz is 4999 bytes; the manifest says 5000');
  });

  it('refuses a missing file, a relative path and a manifest that is not one', async () => {
    const store = await ImageStore.open(root);
    const source = fake('1');
    rmSync(join(source.dir, 'vmlinuz'));
    expect((await storeRefusal(store.importFrom(source.dir))).message).toMatch(/cannot read kernel vmlinuz .*ENOENT/);
    expect((await storeRefusal(store.importFrom('relative/dir'))).message).toContain('not an absolute path');
    writeFileSync(join(source.dir, 'image.json'), '{"name":"compute"}');
    const err = await storeRefusal(store.importFrom(source.dir));
    expect(err.kind).toBe('invalid-source');
    expect(err.message).toMatch(/not an image manifest: .*version/);
  });

  it('takes the same content again under its ref, but refuses different content', async () => {
    const kernel = randomBytes(5000);
    const initrd = randomBytes(3000);
    const store = await ImageStore.open(root);
    await store.importFrom(fake('2', kernel, initrd).dir);
    expect((await store.importFrom(fake('2', kernel, initrd).dir)).created).toBe(false);
    const err = await storeRefusal(store.importFrom(fake('2', kernel, randomBytes(3000)).dir));
    expect(err.kind).toBe('conflict');
    expect(err.message).toMatch(/compute@2 is already stored with digest sha256:[0-9a-f]{64}/);
    expect(readdirSync(join(root, 'blobs', 'sha256')).sort()).toEqual([sha256(kernel), sha256(initrd)].sort());
  });

  it('keeps blobs another image shares when one is removed, and drops the rest', async () => {
    const kernel = randomBytes(5000);
    const initrd1 = randomBytes(3000);
    const initrd2 = randomBytes(3000);
    const store = await ImageStore.open(root);
    await store.importFrom(fake('1', kernel, initrd1).dir);
    await store.importFrom(fake('2', kernel, initrd2).dir);
    expect(readdirSync(store.blobDir)).toHaveLength(3);
    await store.remove('compute@1');
    expect(store.list().map((i) => i.manifest.version)).toEqual(['2']);
    expect(readdirSync(store.blobDir).sort()).toEqual([sha256(kernel), sha256(initrd2)].sort());
    expect((await ImageStore.open(root)).list().map((i) => i.manifest.version)).toEqual(['2']);
    expect((await storeRefusal(store.remove('compute@1'))).kind).toBe('not-found');
  });

  it('removes blobs no image names when it opens (an import cut short)', async () => {
    const store = await ImageStore.open(root);
    await store.importFrom(fake('1').dir);
    writeFileSync(join(store.blobDir, 'f'.repeat(64)), 'orphan');
    writeFileSync(join(root, 'tmp', 'half.part'), 'half');
    const reopened = await ImageStore.open(root);
    expect(readdirSync(reopened.blobDir)).toHaveLength(2);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(await reopened.damaged()).toEqual([]);
  });

  it('refuses to open on a damaged index rather than forget images', async () => {
    await (await ImageStore.open(root)).importFrom(fake('1').dir);
    writeFileSync(join(root, 'index.json'), '{"format":1,"images":');
    await expect(ImageStore.open(root)).rejects.toThrow(/index\.json is damaged: /);
    writeFileSync(join(root, 'index.json'), '{"format":2,"images":{}}');
    await expect(ImageStore.open(root)).rejects.toThrow(/index\.json is damaged: .*format/s);
    // Nothing was cleaned up on the strength of a damaged index.
    expect(readdirSync(join(root, 'blobs', 'sha256'))).toHaveLength(2);
  });

  it('reports a stored blob that went missing', async () => {
    const store = await ImageStore.open(root);
    const { image } = await store.importFrom(fake('1').dir);
    rmSync(store.blobPath(image.manifest.initrd!.sha256));
    expect(await store.damaged()).toEqual([`compute@1 initrd blob ${image.manifest.initrd!.sha256} is missing`]);
  });

  it('runs concurrent imports one after the other into one index', async () => {
    const store = await ImageStore.open(root);
    await Promise.all(['1', '2', '3', '4'].map((v) => store.importFrom(fake(v).dir)));
    expect((await ImageStore.open(root)).list().map((i) => i.manifest.version)).toEqual(['1', '2', '3', '4']);
  });
});
