// Real node images, built from Debian packages by images/ (the recipe folder, not a module):
// the appliance imports compute@1 from its configuration and compute@2 through the API, and
// serves back exactly the kernel and initramfs the build wrote.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR, ensureImages, type BuiltImage } from '../../images/catalog.js';
import { DebianToolError } from '../../images/debian.js';
import { imageDigest } from '../../images/manifest.js';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { createModule } from './module.js';

const run = promisify(execFile);
const skip = skipUnless('images module with built images', requirements({ commands: ['apt-get', 'apt-cache', 'dpkg', 'curl'] }));

describe.skipIf(skip)('images module with images built from Debian packages', { timeout: 300_000 }, () => {
  let work: string;
  let appliance: Appliance | undefined;
  let built: BuiltImage[] = [];
  /** Why the images could not be built when apt or the archive is unavailable: the tests skip. */
  let unavailable: string | undefined;

  beforeAll(async () => {
    try {
      built = await ensureImages(['compute@1', 'compute@2'], DEFAULT_CACHE_DIR);
    } catch (err) {
      // Only the Debian tools' failures (no lists, no archive) skip; a build bug fails the tests.
      if (!(err instanceof DebianToolError)) throw err;
      unavailable = err.message;
      console.warn(`[skip] images module with built images: cannot build images: ${unavailable}`);
      return;
    }
    work = mkdtempSync(join(tmpdir(), 'shoal-built-images-'));
    const config = loadConfig(undefined, { dataDir: join(work, 'data'), api: { listen: '127.0.0.1', port: 0 } });
    appliance = await Appliance.start(config, { modules: [createModule({ import: [built[0]!.dir] })], log: createLogger('silent') });
  }, 300_000);

  afterAll(async () => {
    await appliance?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${appliance!.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${appliance!.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  it('imports both images, each with the digest its build wrote', async (ctx) => {
    if (unavailable) return ctx.skip();
    const [compute1, compute2] = built as [BuiltImage, BuiltImage];
    expect((await api('POST', '/images', { path: compute2.dir })).status).toBe(201);
    const { body } = await api('GET', '/images');
    expect(body.images.map((i: { ref: string; digest: string }) => [i.ref, i.digest])).toEqual([
      ['compute@1', compute1.manifest.digest],
      ['compute@2', compute2.manifest.digest],
    ]);
    for (const image of built) {
      const m = image.manifest;
      expect(m.digest).toBe(imageDigest({ kernelSha256: m.kernel.sha256, initrdSha256: m.initrd.sha256, rootfsSha256: m.rootfs?.sha256, cmdline: m.cmdline }));
    }
    // Same kernel package, different recipe: the kernel blob is stored once.
    expect(compute1.manifest.kernel.sha256).toBe(compute2.manifest.kernel.sha256);
    expect(body.images[1].size).toBe(compute2.manifest.kernel.size + compute2.manifest.initrd.size);
  });

  it('serves the kernel and initramfs byte for byte', async (ctx) => {
    if (unavailable) return ctx.skip();
    for (const image of built) {
      for (const [file, path] of [['vmlinuz', image.kernelPath], ['initrd.img', image.initrdPath]] as const) {
        const out = join(work, `${image.ref}-${file}`);
        const { stdout } = await run('curl', ['-sS', '-o', out, '-w', '%{http_code} %{size_download}', `${appliance!.url}/images/${image.manifest.name}/${image.manifest.version}/${file}`]);
        const served = readFileSync(out);
        expect(stdout).toBe(`200 ${served.length}`);
        expect(createHash('sha256').update(served).digest('hex')).toBe(createHash('sha256').update(readFileSync(path)).digest('hex'));
      }
    }
  });
});
