// The image store: files content-addressed by sha256 under `blobs/sha256/<hex>`, and an index of
// refs (`name@version`) to their manifests in `index.json`, replaced atomically. A blob reaches
// its place only after its bytes were hashed on the way in and matched the manifest, and the
// index names an image only once all its blobs are in place; a crash in between leaves orphan
// blobs that the next open removes, never an image with a missing or wrong file. A compressed disk
// image is also decompressed once on import (disk-bytes.ts) to check the raw bytes a node writes.
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { z } from 'zod';
import type { ImageFile, ImageInfo } from '../../src/contracts/services.js';
import { hasAuthenticodeSignature, PeFormatError } from '../../src/domain/pe-signature.js';
import { DiskDecompressionError, rawDiskBytes } from './disk-bytes.js';
import { artifactsOf, ManifestError, parseStoredManifest, SHA256_HEX, StoredManifestSchema, type Artifact, type DiskArtifact, type StoredManifest } from './manifest.js';

const MAX_MANIFEST_BYTES = 1 << 20;

const StoredImageSchema = z.object({ manifest: StoredManifestSchema, importedAt: z.string() }).strict();
export type StoredImage = z.infer<typeof StoredImageSchema>;
const IndexSchema = z.object({ format: z.literal(1), images: z.record(z.string(), StoredImageSchema) }).strict();

/** Why an import or removal was refused; the module maps `kind` to an HTTP status. */
export class ImageStoreError extends Error {
  constructor(
    readonly kind: 'invalid-source' | 'verification' | 'conflict' | 'not-found',
    message: string,
  ) {
    super(message);
  }
}

export interface ImportResult {
  image: StoredImage;
  /** False when the same content was already stored under this ref (an import is idempotent). */
  created: boolean;
}

export class ImageStore {
  private readonly images = new Map<string, StoredImage>();
  /** Imports and removals one at a time, so each index write starts from the last one. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly root: string) {}

  /** Opens (or creates) the store in `root`, dropping what an interrupted import left behind. */
  static async open(root: string): Promise<ImageStore> {
    const store = new ImageStore(root);
    await mkdir(store.blobDir, { recursive: true });
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { recursive: true });
    let text: string | undefined;
    try {
      text = await readFile(store.indexPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new Error(`${store.indexPath} is damaged: ${(err as Error).message}`);
      }
      const parsed = IndexSchema.safeParse(json);
      if (!parsed.success) throw new Error(`${store.indexPath} is damaged: ${z.prettifyError(parsed.error)}`);
      for (const [ref, image] of Object.entries(parsed.data.images)) store.images.set(ref, image);
    }
    await store.removeUnreferencedBlobs();
    return store;
  }

  get blobDir(): string {
    return join(this.root, 'blobs', 'sha256');
  }

  private get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  private get indexPath(): string {
    return join(this.root, 'index.json');
  }

  blobPath(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`"${sha256}" is not a sha256`);
    return join(this.blobDir, sha256);
  }

  get(ref: string): StoredImage | undefined {
    return this.images.get(ref);
  }

  /** Every stored image, ordered by ref. */
  list(): StoredImage[] {
    return [...this.images.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, image]) => image);
  }

  /** Blobs of stored images that are missing or have the wrong size: what serving would fail on. */
  async damaged(): Promise<string[]> {
    const problems: string[] = [];
    for (const image of this.list()) {
      for (const { role, artifact } of artifactsOf(image.manifest)) {
        const size = await stat(this.blobPath(artifact.sha256)).then((s) => s.size, () => undefined);
        if (size !== artifact.size) problems.push(`${refOf(image.manifest)} ${role} blob ${artifact.sha256} is ${size === undefined ? 'missing' : `${size} bytes, not ${artifact.size}`}`);
      }
    }
    return problems;
  }

  /**
   * Imports the image whose image.json is `source` (or is in the directory `source`): every file
   * is hashed while it is copied and must match the manifest's size and sha256. Refuses a ref
   * stored with different content; on any failure nothing is stored.
   */
  importFrom(source: string, expectedRef?: string): Promise<ImportResult> {
    return this.serialised(() => this.importNow(source, expectedRef));
  }

  /** A new empty directory inside the store (same filesystem, wiped at open) to unpack uploads into. */
  stagingDir(): Promise<string> {
    return mkdtemp(join(this.tmpDir, 'upload-'));
  }

  /** Removes an image from the index, then the blobs no other image uses. */
  remove(ref: string): Promise<StoredImage> {
    return this.serialised(async () => {
      const image = this.images.get(ref);
      if (!image) throw new ImageStoreError('not-found', `no image ${ref} is stored`);
      const next = new Map(this.images);
      next.delete(ref);
      await this.writeIndex(next);
      this.images.delete(ref);
      await this.removeUnreferencedBlobs();
      return image;
    });
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async importNow(source: string, expectedRef: string | undefined): Promise<ImportResult> {
    if (!isAbsolute(source)) throw new ImageStoreError('invalid-source', `"${source}" is not an absolute path`);
    const sourceStat = await stat(source).catch((err: NodeJS.ErrnoException) => {
      throw new ImageStoreError('invalid-source', `cannot read ${source}: ${err.code ?? err.message}`);
    });
    const manifestPath = sourceStat.isDirectory() ? join(source, 'image.json') : source;
    const dir = dirname(manifestPath);
    const manifest = parseManifestOrRefuse(await readManifest(manifestPath), manifestPath);
    const ref = refOf(manifest);
    if (expectedRef !== undefined && ref !== expectedRef) throw new ImageStoreError('invalid-source', `the image is ${ref}, not ${expectedRef} as the upload said`);

    const existing = this.images.get(ref);
    if (existing) {
      if (sameContent(existing.manifest, manifest)) return { image: existing, created: false };
      throw new ImageStoreError('conflict', `${ref} is already stored with digest ${existing.manifest.digest}; ${manifestPath} has ${manifest.digest}. Import it under a new version, or remove ${ref} first`);
    }

    const copies: string[] = [];
    try {
      for (const { role, artifact } of artifactsOf(manifest)) {
        const copy = await this.copyVerified(join(dir, artifact.file), role, artifact);
        copies.push(copy);
        // The copy, not the source: what is checked is what gets stored.
        if (role === 'disk' && manifest.disk) await verifyDiskBytes(copy, manifest.disk);
        if (role === 'kernel' && manifest.kernelSigned) await verifyKernelSigned(copy);
      }
      for (const [i, { artifact }] of artifactsOf(manifest).entries()) {
        // Same hash, same bytes: a blob another image brought stays as it is.
        const blob = this.blobPath(artifact.sha256);
        if (await exists(blob)) await unlink(copies[i]!);
        else await rename(copies[i]!, blob);
      }
      await fsyncDir(this.blobDir);
    } finally {
      await Promise.all(copies.map((c) => rm(c, { force: true })));
    }
    const image: StoredImage = { manifest, importedAt: new Date().toISOString() };
    const next = new Map(this.images);
    next.set(ref, image);
    try {
      await this.writeIndex(next);
    } catch (err) {
      await this.removeUnreferencedBlobs();
      throw err;
    }
    this.images.set(ref, image);
    return { image, created: true };
  }

  /** Copies `path` into the store's tmp directory, hashing it; returns the copy if it matches. */
  private async copyVerified(path: string, role: string, expected: Artifact): Promise<string> {
    const described = `${role} ${basename(path)}`;
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw new ImageStoreError('invalid-source', `cannot read ${described} at ${path}: ${err.code ?? err.message}`);
    });
    if (!info.isFile()) throw new ImageStoreError('invalid-source', `${described} at ${path} is not a regular file`);
    if (info.size !== expected.size) throw new ImageStoreError('verification', `${described} is ${info.size} bytes; the manifest says ${expected.size}`);
    const copy = join(this.tmpDir, `${randomBytes(8).toString('hex')}.part`);
    const hash = createHash('sha256');
    let bytes = 0;
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    const out = createWriteStream(copy, { flags: 'wx', mode: 0o444, flush: true });
    try {
      await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hashing, out);
      const actual = hash.digest('hex');
      if (bytes !== expected.size) throw new ImageStoreError('verification', `${described} changed while it was read: ${bytes} bytes, not ${expected.size}`);
      if (actual !== expected.sha256) throw new ImageStoreError('verification', `${described} has sha256 ${actual}; the manifest says ${expected.sha256}`);
      return copy;
    } catch (err) {
      await rm(copy, { force: true });
      throw err;
    }
  }

  private async writeIndex(images: Map<string, StoredImage>): Promise<void> {
    const body = { format: 1, images: Object.fromEntries([...images.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) };
    const tmp = join(this.tmpDir, `index-${randomBytes(8).toString('hex')}.json`);
    await writeFile(tmp, `${JSON.stringify(body, null, 2)}\n`, { flush: true, mode: 0o644 });
    await rename(tmp, this.indexPath);
    await fsyncDir(this.root);
  }

  private async removeUnreferencedBlobs(): Promise<void> {
    const referenced = new Set(this.list().flatMap((i) => artifactsOf(i.manifest).map((a) => a.artifact.sha256)));
    for (const name of await readdir(this.blobDir)) {
      if (!referenced.has(name)) await rm(join(this.blobDir, name), { force: true });
    }
  }
}

export function refOf(m: Pick<StoredManifest, 'name' | 'version'>): string {
  return `${m.name}@${m.version}`;
}

/** The catalog's view of a stored image: where nodes fetch each file. */
export function imageInfo(image: StoredImage): ImageInfo {
  const m = image.manifest;
  const file = (a: Artifact): ImageFile => ({ sha256: a.sha256, size: a.size, path: `/images/${m.name}/${m.version}/${a.file}` });
  return {
    ref: refOf(m),
    name: m.name,
    version: m.version,
    arch: m.arch,
    digest: m.digest,
    ...(m.kernel && m.initrd ? { kernel: file(m.kernel), initrd: file(m.initrd) } : {}),
    ...(m.rootfs ? { rootfs: file(m.rootfs) } : {}),
    ...(m.disk
      ? { disk: { ...file(m.disk), format: m.disk.format, rawSize: m.disk.rawSize, rawSha256: m.disk.rawSha256, ...(m.disk.bootEnv ? { bootEnv: { ...m.disk.bootEnv } } : {}) } }
      : {}),
    cmdline: m.cmdline,
    ...(m.kernelSigned !== undefined ? { kernelSigned: m.kernelSigned } : {}),
  };
}

/** A manifest that says its kernel is signed is held to it: Secure Boot is offered on that word. */
async function verifyKernelSigned(kernelCopy: string): Promise<void> {
  let signed: boolean;
  try {
    signed = hasAuthenticodeSignature(await readFile(kernelCopy));
  } catch (err) {
    if (!(err instanceof PeFormatError)) throw err;
    throw new ImageStoreError('verification', `the manifest says the kernel is signed, but it is no well-formed PE file: ${err.message}`);
  }
  if (!signed) throw new ImageStoreError('verification', 'the manifest says the kernel is signed, but it carries no Authenticode signature');
}

/** Same bytes served under the same names: provenance (`builtFrom`) may differ. */
function sameContent(a: StoredManifest, b: StoredManifest): boolean {
  const files = (m: StoredManifest) => JSON.stringify(artifactsOf(m).map(({ role, artifact }) => [role, artifact.file, artifact.sha256, artifact.size]));
  return a.digest === b.digest && a.arch === b.arch && files(a) === files(b);
}

/** Checks what a compressed disk's copy decompresses to against rawSize and rawSha256 (a raw one is its own file, checked already). */
async function verifyDiskBytes(copy: string, disk: DiskArtifact): Promise<void> {
  if (disk.format === 'raw') return;
  const described = `disk ${disk.file}`;
  const raw = await rawDiskBytes(copy, disk.format, disk.rawSize).catch((err: unknown) => {
    if (err instanceof DiskDecompressionError) throw new ImageStoreError('verification', `${described} does not decompress as ${disk.format}: ${err.message}`);
    throw err;
  });
  if (!raw.complete) throw new ImageStoreError('verification', `${described} decompresses to more than ${disk.rawSize} bytes (stopped at ${raw.readPast}); the manifest's rawSize says ${disk.rawSize}`);
  if (raw.size !== disk.rawSize) throw new ImageStoreError('verification', `${described} decompresses to ${raw.size} bytes; the manifest's rawSize says ${disk.rawSize}`);
  if (raw.sha256 !== disk.rawSha256) throw new ImageStoreError('verification', `${described} decompresses to bytes with sha256 ${raw.sha256}; the manifest's rawSha256 says ${disk.rawSha256}`);
}

function parseManifestOrRefuse(text: string, source: string): StoredManifest {
  try {
    return parseStoredManifest(text, source);
  } catch (err) {
    if (err instanceof ManifestError) throw new ImageStoreError('invalid-source', err.message);
    throw err;
  }
}

async function readManifest(path: string): Promise<string> {
  const handle = await open(path, constants.O_RDONLY).catch((err: NodeJS.ErrnoException) => {
    throw new ImageStoreError('invalid-source', `cannot read ${path}: ${err.code ?? err.message}`);
  });
  try {
    const { size } = await handle.stat();
    if (size > MAX_MANIFEST_BYTES) throw new ImageStoreError('invalid-source', `${path} is ${size} bytes; an image.json is at most ${MAX_MANIFEST_BYTES}`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Makes renames in `dir` durable. */
async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
