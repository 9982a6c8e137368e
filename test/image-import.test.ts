// `shoal image import` against a running appliance with the images and oci modules: a container
// image made by umoci is imported through the API as a job whose progress the CLI prints, and is
// then stored like any image; a path that is no image fails the job with its reason and stores
// nothing; an appliance without the oci module says what it lacks.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CACHE_DIR } from '../images/catalog.js';
import { createModule as createImagesModule } from '../modules/images/index.js';
import { createModule as createOciModule } from '../modules/oci/index.js';
import { ImportJobListSchema, ImportJobViewSchema } from '../src/api/views.js';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';
import { runShoal } from './support/cli.js';
import { requirements, skipUnless } from './support/environment.js';
import { addImage, busyboxInit, kernelFiles, newLayout } from './support/oci-images.js';

const CACHE_DIR = process.env.SHOAL_IMAGE_CACHE ?? DEFAULT_CACHE_DIR;
const skip = skipUnless('container image import', requirements({ commands: ['skopeo', 'umoci', 'mksquashfs', 'unsquashfs', 'apt-cache'] }));

describe.skipIf(skip)('shoal image import', { timeout: 5 * 60_000 }, () => {
  let t: TestAppliance;
  let work: string;
  let layout: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'shoal-image-import-'));
    layout = join(work, 'site-compute');
    newLayout(layout);
    const withInit = await busyboxInit(CACHE_DIR);
    addImage(layout, work, 'latest', (rootfs) => {
      withInit(rootfs);
      kernelFiles(CACHE_DIR, rootfs);
    });
    t = await startTestAppliance({ modules: [createImagesModule(), createOciModule({ cacheDir: CACHE_DIR })] });
  });
  afterAll(async () => {
    await t?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('imports an OCI layout as a job, printing its progress, and stores the image', async () => {
    const run = await runShoal(t.appliance, ['image', 'import', layout, '--name', 'site-compute@1'], 4 * 60_000);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^import [0-9a-f]{12} queued: /);
    for (const step of [/copying oci:.* \(skopeo\)/, /unpacking \(umoci\)/, /agent installed \(shoal-agent\.service\)/, /writing root\.squashfs/, /storing site-compute@1/]) expect(run.stdout).toMatch(step);
    const digest = /^site-compute@1 (sha256:[0-9a-f]{64})$/m.exec(run.stdout)?.[1];
    expect(digest).toBeDefined();

    const stored = await t.api('GET', '/api/v1/images/site-compute@1');
    expect(stored.status).toBe(200);
    expect(stored.body.digest).toBe(digest);
    expect(stored.body.rootfs.size).toBeGreaterThan(0);
    expect(stored.body.builtFrom.oci.source).toBe(layout);

    const { imports } = ImportJobListSchema.parse((await t.api('GET', '/api/v1/images/imports')).body);
    expect(imports[0]).toMatchObject({ state: 'succeeded', request: { source: layout, name: 'site-compute@1' }, image: { ref: 'site-compute@1', digest, created: true } });
    const listed = await runShoal(t.appliance, ['image', 'imports'], 30_000);
    expect(listed.stdout).toMatch(/^IMPORT\s+STATE/);
    expect(listed.stdout).toMatch(/succeeded\s+\S*site-compute\s+site-compute@1/);
  });

  it('fails the job with the reason for a path that is no image, storing nothing', async () => {
    const plain = join(work, 'not-an-image');
    mkdirSync(plain);
    const before = (await t.api('GET', '/api/v1/images')).body.images.length;
    const run = await runShoal(t.appliance, ['image', 'import', plain], 60_000);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`shoal: import failed: cannot import ${plain}: ${plain} is a directory but not an OCI image layout (it has no oci-layout file)`);
    expect((await t.api('GET', '/api/v1/images')).body.images.length).toBe(before);
    const { imports } = ImportJobListSchema.parse((await t.api('GET', '/api/v1/images/imports')).body);
    const failed = ImportJobViewSchema.parse((await t.api('GET', `/api/v1/images/imports/${imports[0]!.id}`)).body);
    expect(failed).toMatchObject({ state: 'failed', request: { source: plain } });
  });

  it('refuses at once what it cannot start: a bad body, a kernel image not stored, an unknown job', async () => {
    const relative = await t.api('POST', '/api/v1/images/import', { source: 'images/site.tar' });
    expect(relative.status).toBe(400);
    expect(relative.body.detail).toContain('an absolute path on the appliance host');
    const noKernel = await t.api('POST', '/api/v1/images/import', { source: layout, kernelFrom: 'debian@99' });
    expect(noKernel.status).toBe(400);
    expect(noKernel.body.detail).toBe('kernelFrom debian@99: no such image is stored (GET /api/v1/images lists them)');
    expect((await t.api('GET', '/api/v1/images/imports/0123456789ab')).status).toBe(404);
  });

  it('says what an appliance without the oci module lacks', async () => {
    const bare = await startTestAppliance({ modules: [createImagesModule()] });
    try {
      const res = await bare.api('POST', '/api/v1/images/import', { source: layout });
      expect(res.status).toBe(501);
      expect(res.body.detail).toContain('needs the oci module in the configuration');
    } finally {
      await bare.close();
    }
  });
});
