// The edge of an OCI import: an image layout (as `skopeo copy … oci:DIR:TAG` writes it) is read
// and checked here before umoci touches it. The index, manifest and config are parsed with zod and
// each blob is hashed against its digest; every layer is streamed (never held in memory) through
// its decompressor and its tar headers read, so a layer whose entries escape the root (absolute or
// `..` paths, hard links out of it) or that holds device files outside /dev is refused, and its
// uncompressed hash must match the config's diff_id.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { z } from 'zod';

/** The image is not one Shoal can boot, or its layout is damaged; the message names the source and the reason. */
export class OciImageError extends Error {}

const DIGEST = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256 digest');
const descriptor = z.object({ mediaType: z.string(), digest: DIGEST, size: z.number().int().nonnegative(), annotations: z.record(z.string(), z.string()).optional() });

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const REF_NAME = 'org.opencontainers.image.ref.name';

const IndexSchema = z.object({ schemaVersion: z.literal(2), manifests: z.array(descriptor) });
const ManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(OCI_MANIFEST).optional(),
  config: descriptor.extend({ mediaType: z.literal('application/vnd.oci.image.config.v1+json') }),
  layers: z.array(descriptor),
});
const ConfigSchema = z.object({
  architecture: z.string(),
  os: z.string(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(DIGEST) }),
});

/** How each layer media type is decompressed: gzip by Node, zstd by the zstd command. */
const LAYER_TYPES: Record<string, 'none' | 'gzip' | 'zstd'> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
};

export interface OciImage {
  /** The manifest's digest: what the image is, whatever it was called where it came from. */
  manifestDigest: string;
  configDigest: string;
  architecture: string;
  layers: { digest: string; size: number; compression: 'none' | 'gzip' | 'zstd'; diffId: string }[];
}

const hex = (digest: string) => digest.slice('sha256:'.length);

async function readBlob(layout: string, digest: string, size: number, what: string): Promise<Buffer> {
  const data = await readFile(join(layout, 'blobs', 'sha256', hex(digest))).catch((error: NodeJS.ErrnoException) => {
    throw new OciImageError(`the ${what} blob ${digest} cannot be read: ${error.code ?? error.message}`);
  });
  const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  if (actual !== digest || data.length !== size) throw new OciImageError(`the ${what} blob does not match its digest: expected ${digest} (${size} bytes), found ${actual} (${data.length} bytes)`);
  return data;
}

function parseJson<T>(schema: z.ZodType<T>, data: Buffer, what: string): T {
  let json: unknown;
  try {
    json = JSON.parse(data.toString('utf8'));
  } catch (error) {
    throw new OciImageError(`the ${what} is not JSON: ${(error as Error).message}`);
  }
  const result = schema.safeParse(json);
  if (!result.success) throw new OciImageError(`the ${what} is not an OCI ${what}: ${result.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  return result.data;
}

/** Reads and checks the image tagged `tag` in the layout `layout`; refuses any architecture but amd64. */
export async function readOciImage(layout: string, tag: string): Promise<OciImage> {
  const index = parseJson(IndexSchema, await readFile(join(layout, 'index.json')).catch(() => Buffer.from('')), 'index');
  const entry = index.manifests.find((m) => m.annotations?.[REF_NAME] === tag);
  if (!entry) throw new OciImageError(`the layout has no image tagged ${tag}`);
  if (entry.mediaType !== OCI_MANIFEST) throw new OciImageError(`the image is a ${entry.mediaType}, not an OCI image manifest`);
  const manifest = parseJson(ManifestSchema, await readBlob(layout, entry.digest, entry.size, 'manifest'), 'manifest');
  const config = parseJson(ConfigSchema, await readBlob(layout, manifest.config.digest, manifest.config.size, 'config'), 'config');
  if (config.architecture !== 'amd64' || config.os !== 'linux') throw new OciImageError(`the image is for ${config.os}/${config.architecture}; Shoal nodes boot linux/amd64`);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) throw new OciImageError(`the config lists ${config.rootfs.diff_ids.length} layer diff_ids for ${manifest.layers.length} layers`);
  const layers = manifest.layers.map((layer, i) => {
    const compression = LAYER_TYPES[layer.mediaType];
    if (!compression) throw new OciImageError(`layer ${layer.digest} is a ${layer.mediaType}, not one of ${Object.keys(LAYER_TYPES).join(', ')}`);
    return { digest: layer.digest, size: layer.size, compression, diffId: config.rootfs.diff_ids[i]! };
  });
  return { manifestDigest: entry.digest, configDigest: manifest.config.digest, architecture: config.architecture, layers };
}

/** Why a tar entry cannot be part of a node's root, or undefined when it can. */
export function entryProblem(entry: { path: string; type: string; linkPath: string }): string | undefined {
  // umoci writes the root directory itself as "/" (umoci insert DIR /): the root, not an escape.
  if (entry.path === '/' && entry.type === '5') return undefined;
  const escapes = (p: string) => p.startsWith('/') || p.split('/').includes('..');
  if (escapes(entry.path)) return `${JSON.stringify(entry.path)} is ${entry.path.startsWith('/') ? 'an absolute path' : 'a path with ..'}`;
  // A hard link names another entry of the archive: one outside the root would link a host file in.
  if (entry.type === '1' && escapes(entry.linkPath)) return `${JSON.stringify(entry.path)} is a hard link to ${JSON.stringify(entry.linkPath)}, outside the root`;
  const path = entry.path.replace(/^(\.\/)+/, '');
  if ((entry.type === '3' || entry.type === '4') && !path.startsWith('dev/')) return `${JSON.stringify(entry.path)} is a ${entry.type === '3' ? 'character' : 'block'} device outside /dev`;
  return undefined;
}

const TAR_BLOCK = 512;
const MAX_HEADER_DATA = 1 << 20;

const field = (header: Buffer, start: number, length: number) => {
  const raw = header.subarray(start, start + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? length : end).toString('utf8');
};

function numberField(header: Buffer, start: number, length: number): number {
  // GNU base-256 for sizes past 8 GiB: the high bit of the first byte set.
  if (header[start]! & 0x80) return header.subarray(start + 1, start + length).reduce((n, b) => n * 256 + b, header[start]! & 0x7f);
  const text = field(header, start, length).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

/** PAX extended header records ("LEN key=value\n"), of which path and linkpath matter here. */
function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = parseInt(data.subarray(at, space).toString('ascii'), 10);
    if (space < 0 || !(length > 0)) break;
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    records.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return records;
}

/**
 * Reads the tar headers of `stream`, skipping file data without keeping it, and calls `check` on
 * each entry (path and link resolved through PAX and GNU long-name records). Rejects a stream that
 * is not a tar.
 */
export async function walkTar(stream: AsyncIterable<Buffer> | Iterable<Buffer>, check: (entry: { path: string; type: string; linkPath: string }) => void): Promise<void> {
  let pending: Buffer = Buffer.alloc(0);
  let skip = 0; // data bytes (with padding) still to pass over
  let collecting: { type: string; size: number; chunks: Buffer[]; have: number } | undefined;
  let next: { path?: string; linkPath?: string } = {};
  let ended = false;
  for await (const chunk of stream) {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (!ended) {
      if (skip > 0) {
        const take = Math.min(skip, pending.length);
        if (collecting && collecting.have < collecting.size) {
          const part = pending.subarray(0, Math.min(take, collecting.size - collecting.have));
          collecting.chunks.push(part);
          collecting.have += part.length;
        }
        pending = pending.subarray(take);
        skip -= take;
        if (skip > 0) break;
        if (collecting) {
          const data = Buffer.concat(collecting.chunks);
          if (collecting.type === 'x') {
            const records = paxRecords(data);
            next = { path: records.get('path') ?? next.path, linkPath: records.get('linkpath') ?? next.linkPath };
          } else if (collecting.type === 'L') next.path = field(data, 0, data.length);
          else if (collecting.type === 'K') next.linkPath = field(data, 0, data.length);
          collecting = undefined;
        }
        continue;
      }
      if (pending.length < TAR_BLOCK) break;
      const header = pending.subarray(0, TAR_BLOCK);
      pending = pending.subarray(TAR_BLOCK);
      if (header.every((b) => b === 0)) {
        ended = true;
        break;
      }
      const checksum = numberField(header, 148, 8);
      const sum = header.reduce((n, b, i) => n + (i >= 148 && i < 156 ? 0x20 : b), 0);
      if (checksum !== sum) throw new OciImageError('a layer is not a tar archive (a header checksum is wrong)');
      const type = String.fromCharCode(header[156]!) === '\0' ? '0' : String.fromCharCode(header[156]!);
      const size = numberField(header, 124, 12);
      skip = Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
      if (type === 'x' || type === 'L' || type === 'K') {
        if (size > MAX_HEADER_DATA) throw new OciImageError(`a layer has a ${size}-byte extended header`);
        collecting = { type, size, chunks: [], have: 0 };
        continue;
      }
      if (type === 'g') continue;
      const prefix = field(header, 345, 155);
      const name = field(header, 0, 100);
      const entry = { path: next.path ?? (prefix ? `${prefix}/${name}` : name), type, linkPath: next.linkPath ?? field(header, 157, 100) };
      next = {};
      check(entry);
    }
  }
  // umoci writes layers without the end-of-archive blocks; one that stops between entries is whole
  // (the diff_id check proves it is the stream the image was made with), one that stops inside an entry is not.
  if (!ended && (skip > 0 || pending.length > 0 || collecting)) throw new OciImageError('a layer is not a complete tar archive (it ends inside an entry)');
}

/** The layer's tar, decompressed; `raw`'s errors (and the decompressor's) end it with that error. */
function decompressed(raw: Readable, compression: 'none' | 'gzip' | 'zstd'): Readable {
  if (compression === 'none') return raw;
  if (compression === 'gzip') return pipeline(raw, createGunzip(), () => {});
  const zstd = spawn('zstd', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const fail = (error: Error) => zstd.stdout.destroy(error);
  zstd.on('error', (error: NodeJS.ErrnoException) => fail(error.code === 'ENOENT' ? new OciImageError('a layer is zstd-compressed and zstd is not installed (apt-get install zstd)') : error));
  pipeline(raw, zstd.stdin, (error) => error && fail(error));
  return zstd.stdout;
}

/** A pass-through that hashes and counts what goes by. */
function hashing(): Transform & { digest: () => string; bytes: number } {
  const hash = createHash('sha256');
  const stream = Object.assign(
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        stream.bytes += chunk.length;
        done(null, chunk);
      },
    }),
    { bytes: 0, digest: () => `sha256:${hash.digest('hex')}` },
  );
  return stream;
}

/**
 * Streams each layer blob once: its bytes must hash to its digest, its uncompressed tar to its
 * diff_id, and every entry must pass `entryProblem`. The first refusal names the layer.
 */
export async function checkLayers(layout: string, image: OciImage, progress: (line: string) => void): Promise<void> {
  for (const [i, layer] of image.layers.entries()) {
    progress(`checking layer ${i + 1}/${image.layers.length} ${layer.digest.slice(0, 19)} (${layer.size} bytes)`);
    const blob = hashing();
    const tar = hashing();
    const entries = pipeline(decompressed(pipeline(createReadStream(join(layout, 'blobs', 'sha256', hex(layer.digest))), blob, () => {}), layer.compression), tar, () => {});
    try {
      // Read to the end: what follows the end-of-archive blocks counts towards both hashes too.
      await walkTar(entries, (entry) => {
        const problem = entryProblem(entry);
        if (problem) throw new OciImageError(`layer ${layer.digest} holds ${problem}`);
      });
    } catch (error) {
      entries.destroy();
      if (error instanceof OciImageError) throw error;
      throw new OciImageError(`layer ${layer.digest} cannot be read as a ${layer.compression === 'none' ? '' : `${layer.compression}'d `}tar: ${(error as Error).message}`);
    }
    const blobDigest = blob.digest();
    if (blobDigest !== layer.digest || blob.bytes !== layer.size) throw new OciImageError(`layer ${layer.digest} does not match its digest: found ${blobDigest} (${blob.bytes} bytes)`);
    const diffId = tar.digest();
    if (diffId !== layer.diffId) throw new OciImageError(`layer ${layer.digest} unpacks to ${diffId}, not the config's diff_id ${layer.diffId}`);
  }
}
