// OCI layouts as a hostile container image could hand them to the import's checker
// (images/oci-layout.ts): layers from the image tar generator (`../` and absolute paths, links out
// of the root, devices, pax and long names, byte damage), plain or gzip'd, inside a layout whose
// index, manifest and config are well formed or damaged (wrong digests, sizes, media types,
// architectures, diff_ids, JSON). Each input must be accepted or refused with an OciImageError,
// and a layer the checker accepts must hold no entry `entryProblem` refuses.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { checkLayers, entryProblem, OciImageError, readOciImage, walkTar } from '../../../images/oci-layout.js';
import { classifyAsync, type FuzzTarget, type Gen } from '../kit.js';
import { archive } from './images.js';

const TAG = 'shoal';
const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Sometimes a byte-damaged copy: what a truncated download or a tampered blob looks like. */
function maybeDamaged(g: Gen, data: Buffer): Buffer {
  return g.chance(0.05) ? g.mutateBytes(data) : data;
}

function layout(g: Gen, dir: string, tar: Buffer): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (data: Buffer) => {
    const digest = sha256(data);
    writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), maybeDamaged(g, data));
    return { digest, size: g.chance(0.03) ? data.length + 1 : data.length };
  };
  const gzipped = g.bool();
  const layerBlob = put(gzipped ? gzipSync(tar) : tar);
  const config = {
    architecture: g.chance(0.95) ? 'amd64' : g.pick(['arm64', '', 'x86_64']),
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: g.chance(0.95) ? [sha256(tar)] : g.pick([[], [sha256(Buffer.from('other'))], ['not-a-digest']]) },
  };
  const configBlob = put(Buffer.from(g.chance(0.03) ? '{"architecture":' : JSON.stringify(config)));
  const layerType = g.chance(0.95) ? `application/vnd.oci.image.layer.v1.tar${gzipped ? '+gzip' : ''}` : g.pick(['application/vnd.docker.image.rootfs.diff.tar.gzip', 'text/plain', '']);
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configBlob },
    layers: [{ mediaType: layerType, ...layerBlob }],
  };
  const manifestBlob = put(Buffer.from(JSON.stringify(manifest)));
  const index = { schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifestBlob, annotations: { 'org.opencontainers.image.ref.name': g.chance(0.97) ? TAG : 'other' } }] };
  writeFileSync(join(dir, 'index.json'), maybeDamaged(g, Buffer.from(JSON.stringify(index))));
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
}

export const ociFuzzTarget: FuzzTarget = {
  name: 'oci layout',
  async open() {
    const outer = mkdtempSync(join(tmpdir(), 'shoal-oci-fuzz-'));
    let n = 0;
    return {
      async one(g) {
        const dir = join(outer, `layout-${n++}`);
        const tar = archive(g);
        layout(g, dir, tar);
        const outcome = await classifyAsync(
          async () => checkLayers(dir, await readOciImage(dir, TAG), () => {}),
          (error) => error instanceof OciImageError,
        );
        if (outcome === 'accepted') {
          await walkTar([tar], (entry) => {
            const problem = entryProblem(entry);
            if (problem) throw new Error(`the checker accepted a layer holding ${problem}`);
          });
        }
        rmSync(dir, { recursive: true, force: true });
        return outcome;
      },
      async close() {
        rmSync(outer, { recursive: true, force: true });
      },
    };
  },
};
