// Reads image.json out of a picked tar file before it is uploaded, so the page can say which image
// the upload will add (the API wants its ref in the query) and what the archive holds. Only the
// headers and image.json are read (File.slice), never the kernel or root image. The appliance
// reads the archive again and verifies every file; this is for the confirmation, not a check.

const BLOCK = 512;
/** image.json and its three files at most; a few more entries ("./", pax headers) are tolerated. */
const MAX_ENTRIES = 16;
const MAX_MANIFEST_BYTES = 1 << 20;

export interface ArchiveEntry {
  name: string;
  size: number;
}

export interface ImageArchive {
  /** The regular files in the archive, names without a leading `./`. */
  entries: ArchiveEntry[];
  /** image.json as parsed JSON, when it could be read. */
  manifest?: ImageManifest;
  /** Why it could not. */
  manifestError?: string;
}

/** The fields of image.json the page shows (modules/images/manifest.ts has the format). */
export interface ImageManifest {
  name?: unknown;
  version?: unknown;
  arch?: unknown;
  digest?: unknown;
  kernel?: { file?: unknown; size?: unknown };
  initrd?: { file?: unknown; size?: unknown };
  rootfs?: { file?: unknown; size?: unknown };
}

export class NotATar extends Error {}

const text = new TextDecoder();

async function bytes(file: Blob, start: number, length: number): Promise<Uint8Array> {
  return new Uint8Array(await file.slice(start, start + length).arrayBuffer());
}

function field(header: Uint8Array, offset: number, length: number): string {
  const raw = header.subarray(offset, offset + length);
  const nul = raw.indexOf(0);
  return text.decode(nul < 0 ? raw : raw.subarray(0, nul));
}

/** pax records: "<length> <key>=<value>\n". */
function paxRecords(data: Uint8Array): Map<string, string> {
  const records = new Map<string, string>();
  for (const line of text.decode(data).split('\n')) {
    const m = /^\d+ ([^=]+)=(.*)$/s.exec(line);
    if (m) records.set(m[1]!, m[2]!);
  }
  return records;
}

/** Lists the archive and parses its image.json; throws NotATar when the file is not a tar. */
export async function readImageArchive(file: Blob): Promise<ImageArchive> {
  const entries: ArchiveEntry[] = [];
  let manifest: ImageManifest | undefined;
  let manifestError = 'the archive has no image.json at its top';
  let pax: Map<string, string> | undefined;
  let offset = 0;
  for (let i = 0; i < MAX_ENTRIES && offset + BLOCK <= file.size; i++) {
    const header = await bytes(file, offset, BLOCK);
    if (header.every((b) => b === 0)) break;
    const checksum = parseInt(field(header, 148, 8).trim(), 8);
    let sum = 0;
    for (let j = 0; j < BLOCK; j++) sum += j >= 148 && j < 156 ? 0x20 : header[j]!;
    if (checksum !== sum) throw new NotATar(offset === 0 ? 'this file is not a tar archive' : `the tar header at byte ${offset} is damaged`);
    const prefix = field(header, 257, 6) === 'ustar' && header[262] === 0 ? field(header, 345, 155) : '';
    const name = (pax?.get('path') ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100))).replace(/^(\.\/)+/, '').replace(/\/$/, '');
    const size = pax?.has('size') ? Number(pax.get('size')) : parseInt(field(header, 124, 12).trim() || '0', 8);
    pax = undefined;
    const type = String.fromCharCode(header[156]!);
    const dataAt = offset + BLOCK;
    if (type === 'x') pax = paxRecords(await bytes(file, dataAt, Math.min(size, 65536)));
    else if (type === '0' || type === '\0') {
      entries.push({ name, size });
      if (name === 'image.json') {
        if (size > MAX_MANIFEST_BYTES) manifestError = `image.json is ${size} bytes, too large to be a manifest`;
        else {
          try {
            const parsed = JSON.parse(text.decode(await bytes(file, dataAt, size))) as unknown;
            if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) manifest = parsed as ImageManifest;
            else manifestError = 'image.json is not a JSON object';
          } catch (err) {
            manifestError = `image.json is not JSON: ${(err as Error).message}`;
          }
        }
      }
    }
    offset = dataAt + Math.ceil(size / BLOCK) * BLOCK;
  }
  return manifest ? { entries, manifest } : { entries, manifestError };
}

/** `name@version` as image.json says, when it says both. */
export function refOfManifest(m: ImageManifest | undefined): string | undefined {
  if (!m) return undefined;
  return typeof m.name === 'string' && typeof m.version === 'string' ? `${m.name}@${m.version}` : undefined;
}
