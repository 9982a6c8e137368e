// The images module inside a running appliance: the operator API with its token, the images
// service other modules see, removal refused while nodes want an image, and the node-facing file
// server checked with curl (full download, a range, HEAD, If-None-Match, bad paths), and what it
// counts of those at /metrics.
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get as httpGet } from 'node:http';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import type { ServiceRegistry } from '../../src/contracts/services.js';
import { startTestAppliance } from '../../test/support/appliance.js';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { writeFakeImage, type FakeImage } from '../../test/support/fake-image.js';
import { createModule } from './module.js';

const run = promisify(execFile);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const noCurl = skipUnless('image serving checked with curl', requirements({ commands: ['curl'] }));
const noTar = skipUnless('image upload made with tar', requirements({ commands: ['tar'] }));

describe('images module in the appliance', { timeout: 60_000 }, () => {
  let work: string;
  let appliance: Appliance;
  let services: ServiceRegistry;
  let compute1: FakeImage;
  let compute2: FakeImage;
  const kernel1 = randomBytes(300_000);
  const initrd1 = randomBytes(120_000);

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'shoal-images-module-'));
    compute1 = writeFakeImage(join(work, 'compute@1'), { name: 'compute', version: '1', kernel: kernel1, initrd: initrd1 });
    compute2 = writeFakeImage(join(work, 'compute@2'), { name: 'compute', version: '2', kernel: kernel1, initrd: randomBytes(50_000), cmdline: 'console=ttyS0' });
    const config = loadConfig(undefined, { dataDir: join(work, 'data'), api: { listen: '127.0.0.1', port: 0 } });
    const images = createModule({ import: [compute1.dir] });
    // Stands in for a module that uses the service (boot, agent): sees what they would see.
    const consumer = { name: 'consumer', start: (host: { services: ServiceRegistry }) => void (services = host.services) };
    appliance = await Appliance.start(config, { modules: [images, consumer], log: createLogger('silent') });
  });

  afterAll(async () => {
    await appliance?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const api = async (method: string, path: string, body?: unknown, token: string | null = appliance.token) => {
    const res = await fetch(`${appliance.url}/api/v1${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: text ? JSON.parse(text) : undefined };
  };

  it('lists the image imported at start, only with the token', async () => {
    expect((await api('GET', '/images', undefined, null)).status).toBe(401);
    expect((await api('GET', '/images', undefined, 'not-the-token')).status).toBe(401);
    const { status, body } = await api('GET', '/images');
    expect(status).toBe(200);
    expect(body.images).toHaveLength(1);
    expect(body.images[0]).toMatchObject({
      ref: 'compute@1',
      digest: compute1.manifest.digest,
      size: kernel1.length + initrd1.length,
      kernel: { sha256: sha256(kernel1), size: kernel1.length, path: '/images/compute/1/vmlinuz' },
      nodes: [],
    });
    expect((await api('GET', '/images/compute@1')).body.digest).toBe(compute1.manifest.digest);
  });

  it('imports a directory, once; a second import of the same content changes nothing', async () => {
    const first = await api('POST', '/images', { path: compute2.dir });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ ref: 'compute@2', digest: compute2.manifest.digest, nodes: [] });
    expect((await api('POST', '/images', { path: compute2.dir })).status).toBe(200);
    expect((await api('GET', '/images')).body.images.map((i: { ref: string }) => i.ref)).toEqual(['compute@1', 'compute@2']);
  });

  it('provides the images service: by ref, by digest, all', () => {
    const catalog = services.get('images')!;
    expect(catalog.get('compute@2')?.initrd?.path).toBe('/images/compute/2/initrd.img');
    expect(catalog.get('compute@2')?.cmdline).toBe('console=ttyS0');
    expect(catalog.byDigest(compute1.manifest.digest)?.ref).toBe('compute@1');
    expect(catalog.byDigest(`sha256:${'0'.repeat(64)}`)).toBeUndefined();
    expect(catalog.list().map((i) => i.ref)).toEqual(['compute@1', 'compute@2']);
  });

  it('answers bad imports with problem+json and stores nothing', async () => {
    const relative = await api('POST', '/images', { path: 'images/compute' });
    expect(relative.status).toBe(400);
    expect(relative.type).toContain('application/problem+json');
    expect(relative.body.errors[0].path).toBe('path');
    expect((await api('POST', '/images', { path: '/x', extra: 1 })).status).toBe(400);
    expect((await api('POST', '/images', { path: join(work, 'nowhere') })).body.detail).toMatch(/cannot read .*ENOENT/);

    const broken = writeFakeImage(join(work, 'compute@3'), { name: 'compute', version: '3', kernel: randomBytes(1000), initrd: randomBytes(1000) });
    const kernel = readFileSync(join(broken.dir, 'vmlinuz'));
    kernel[0] = kernel[0]! ^ 0xff;
    writeFileSync(join(broken.dir, 'vmlinuz'), kernel);
    const refused = await api('POST', '/images', { path: broken.dir });
    expect(refused.status).toBe(422);
    expect(refused.body.detail).toContain(`kernel vmlinuz has sha256 ${sha256(kernel)}`);
    expect((await api('GET', '/images/compute@3')).status).toBe(404);

    const changed = writeFakeImage(join(work, 'compute@2-changed'), { name: 'compute', version: '2', kernel: randomBytes(1000), initrd: randomBytes(1000) });
    const conflict = await api('POST', '/images', { path: changed.dir });
    expect(conflict.status).toBe(409);
    expect(conflict.body.detail).toContain(`compute@2 is already stored with digest ${compute2.manifest.digest}`);
    expect((await api('GET', '/images/not-a-ref')).status).toBe(400);
  });

  it('refuses to remove an image nodes want, naming them; removes it once they want another', async () => {
    for (const name of ['img-a', 'img-b']) {
      expect((await api('POST', '/nodes', { name, macs: [`52:54:00:1${name.length}:00:0${name.at(-1) === 'a' ? 1 : 2}`], bmc: `sim://bmc-${name}` })).status).toBe(201);
      expect((await api('PATCH', `/nodes/${name}/desired`, { image: 'compute@2' })).status).toBe(200);
    }
    expect((await api('GET', '/images/compute@2')).body.nodes).toEqual(['img-a', 'img-b']);
    const refused = await api('DELETE', '/images/compute@2');
    expect(refused.status).toBe(409);
    expect(refused.body.detail).toBe('compute@2 is the desired image of 2 nodes: img-a, img-b; set another image on them first');
    expect(refused.body.nodes).toEqual(['img-a', 'img-b']);

    for (const name of ['img-a', 'img-b']) await api('PATCH', `/nodes/${name}/desired`, { image: 'compute@1' });
    expect((await api('DELETE', '/images/compute@2')).status).toBe(204);
    expect((await api('GET', '/images/compute@2')).status).toBe(404);
    expect((await api('DELETE', '/images/compute@2')).status).toBe(404);
    expect(services.get('images')!.get('compute@2')).toBeUndefined();
    const gone = await fetch(`${appliance.url}/images/compute/2/initrd.img`);
    expect(gone.status).toBe(404);
    // The kernel blob is shared with compute@1 and still served under its name.
    expect((await fetch(`${appliance.url}/images/compute/1/vmlinuz`, { method: 'HEAD' })).status).toBe(200);
  });

  it.skipIf(noTar)('takes an upload: a tar of image.json and its files, for the ref the query names', async () => {
    const upload = async (ref: string, dir: string, type = 'application/x-tar') => {
      const res = await fetch(`${appliance.url}/api/v1/images/upload?ref=${ref}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${appliance.token}`, 'content-type': type },
        body: execFileSync('tar', ['-C', dir, '-cf', '-', '.']),
      });
      return { status: res.status, body: (await res.json()) as { ref?: string; digest?: string; detail?: string } };
    };
    const compute4 = writeFakeImage(join(work, 'compute@4'), { name: 'compute', version: '4', kernel: randomBytes(70_000), initrd: randomBytes(20_000) });
    expect((await upload('compute@4', compute4.dir, 'application/octet-stream')).status).toBe(415);
    const wrongRef = await upload('compute@5', compute4.dir);
    expect(wrongRef.status).toBe(400);
    expect(wrongRef.body.detail).toBe('the image is compute@4, not compute@5 as the upload said');
    const created = await upload('compute@4', compute4.dir);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ ref: 'compute@4', digest: compute4.manifest.digest });
    const served = Buffer.from(await (await fetch(`${appliance.url}/images/compute/4/vmlinuz`)).arrayBuffer());
    expect(sha256(served)).toBe(compute4.manifest.kernel!.sha256);

    const broken = writeFakeImage(join(work, 'compute@6'), { name: 'compute', version: '6', kernel: randomBytes(1000), initrd: randomBytes(1000) });
    writeFileSync(join(broken.dir, 'initrd.img'), randomBytes(1000));
    expect((await upload('compute@6', broken.dir)).status).toBe(422);
    expect((await api('GET', '/images/compute@6')).status).toBe(404);
    expect(readdirSync(join(work, 'data', 'modules', 'images', 'tmp'))).toEqual([]);

    // A client that goes away mid-upload leaves nothing behind.
    const tar = execFileSync('tar', ['-C', compute4.dir, '-cf', '-', '.']);
    const { port } = new URL(appliance.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`POST /api/v1/images/upload?ref=compute@7 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${appliance.token}\r\ncontent-type: application/x-tar\r\ncontent-length: ${tar.length}\r\n\r\n`);
    socket.write(tar.subarray(0, 40_000));
    const tmp = join(work, 'data', 'modules', 'images', 'tmp');
    for (let i = 0; i < 100 && readdirSync(tmp).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(readdirSync(tmp)).toHaveLength(1); // the upload is being unpacked
    socket.destroy();
    for (let i = 0; i < 100 && readdirSync(tmp).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(readdirSync(tmp)).toEqual([]);
    expect((await api('GET', '/images/compute@7')).status).toBe(404);
  });

  describe.skipIf(noCurl)('serving files to nodes', () => {
    const curl = async (...args: string[]) => {
      const out = join(work, `curl-${randomBytes(4).toString('hex')}`);
      const { stdout } = await run('curl', ['-sS', '-o', out, '-D', '-', ...args], { timeout: 20_000 });
      const [status, ...headerLines] = stdout.trim().split(/\r?\n/);
      const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      // curl writes no file for an empty body (304).
      const body = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
      rmSync(out, { force: true });
      return { status: Number(status!.split(' ')[1]), headers, headerText: stdout, body };
    };
    const url = (path: string) => `${appliance.url}${path}`;

    it('sends the whole file, with its sha256 as ETag and its length', async () => {
      const res = await curl(url('/images/compute/1/vmlinuz'));
      expect(res.status).toBe(200);
      expect(sha256(res.body)).toBe(sha256(kernel1));
      expect(res.headers['content-length']).toBe(String(kernel1.length));
      expect(res.headers.etag).toBe(`"${sha256(kernel1)}"`);
      expect(res.headers['accept-ranges']).toBe('bytes');
      expect(res.headers['content-type']).toBe('application/octet-stream');
    });

    it('sends a range as 206 with the right bytes', async () => {
      const first = await curl('-r', '0-99', url('/images/compute/1/initrd.img'));
      expect(first.status).toBe(206);
      expect(first.body).toEqual(initrd1.subarray(0, 100));
      expect(first.headers['content-range']).toBe(`bytes 0-99/${initrd1.length}`);
      expect(first.headers['content-length']).toBe('100');
      const tail = await curl('-r', '-1000', url('/images/compute/1/initrd.img'));
      expect(tail.status).toBe(206);
      expect(tail.body).toEqual(initrd1.subarray(initrd1.length - 1000));
      const outside = await curl('-r', `${initrd1.length}-`, url('/images/compute/1/initrd.img'));
      expect(outside.status).toBe(416);
      expect(outside.headers['content-range']).toBe(`bytes */${initrd1.length}`);
    });

    it('answers HEAD with the headers and no body', async () => {
      const res = await curl('--head', url('/images/compute/1/initrd.img'));
      expect(res.status).toBe(200);
      expect(res.headers['content-length']).toBe(String(initrd1.length));
      expect(res.headers.etag).toBe(`"${sha256(initrd1)}"`);
      // With --head, curl's output is the header block; a body after it would be there too.
      expect(res.body.toString()).toBe(res.headerText);
    });

    it('answers 304 when the node already has these bytes, and the file when it has others', async () => {
      const same = await curl('-H', `If-None-Match: "${sha256(kernel1)}"`, url('/images/compute/1/vmlinuz'));
      expect(same.status).toBe(304);
      expect(same.body.length).toBe(0);
      const other = await curl('-H', `If-None-Match: "${'0'.repeat(64)}"`, url('/images/compute/1/vmlinuz'));
      expect(other.status).toBe(200);
      expect(sha256(other.body)).toBe(sha256(kernel1));
      // A range of a file that changed since (If-Range names the old one) gets the whole new file.
      const stale = await curl('-r', '0-9', '-H', `If-Range: "${'0'.repeat(64)}"`, url('/images/compute/1/vmlinuz'));
      expect(stale.status).toBe(200);
      expect(stale.body.length).toBe(kernel1.length);
    });

    it('serves only files the index names: no manifests, no other paths, no traversal', async () => {
      for (const path of ['/images/compute/1/image.json', '/images/compute/9/vmlinuz', '/images/compute/1/..%2F..%2Findex.json', '/images/compute/1/%2e%2e', '/images/../index.json']) {
        const res = await curl('--path-as-is', url(path));
        expect(res.status, path).toBe(404);
      }
      const traversal = await curl('--path-as-is', url('/images/compute/1/../../../../etc/passwd'));
      expect(traversal.status).toBe(404);
      expect(traversal.body.toString()).not.toContain('root:');
    });
  });
});

describe('images imported at start', { timeout: 60_000 }, () => {
  let work: string;
  beforeAll(() => void (work = mkdtempSync(join(tmpdir(), 'shoal-images-start-'))));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const start = (dataDir: string, dirs: string[]) =>
    Appliance.start(loadConfig(undefined, { dataDir: join(work, dataDir), api: { listen: '127.0.0.1', port: 0 } }), { modules: [createModule({ import: dirs })], log: createLogger('silent') });

  it('refuses to start on a seed directory it cannot read', async () => {
    await expect(start('a', [join(work, 'missing')])).rejects.toThrow(`importing ${join(work, 'missing')}: cannot read ${join(work, 'missing')}: ENOENT`);
  });

  it('keeps the stored image when a seed was rebuilt with other content under the same ref, and starts', async () => {
    const first = writeFakeImage(join(work, 'v1'), { name: 'compute', version: '1', kernel: randomBytes(1000), initrd: randomBytes(1000) });
    const rebuilt = writeFakeImage(join(work, 'v1-rebuilt'), { name: 'compute', version: '1', kernel: randomBytes(1000), initrd: randomBytes(1000) });
    const appliance = await start('b', [first.dir, rebuilt.dir]);
    try {
      const res = await fetch(`${appliance.url}/api/v1/images/compute@1`, { headers: { authorization: `Bearer ${appliance.token}` } });
      expect(((await res.json()) as { digest: string }).digest).toBe(first.manifest.digest);
    } finally {
      await appliance.stop();
    }
  });

  it('rejects options that are not a list of absolute paths', () => {
    expect(() => createModule({ import: ['relative'] })).toThrow(/absolute path/);
    expect(() => createModule({ imports: [] })).toThrow();
  });
});

describe('images module metrics', { timeout: 60_000 }, () => {
  it('serves its request, byte and Range counters at /metrics', async () => {
    const work = mkdtempSync(join(tmpdir(), 'shoal-images-metrics-'));
    const kernel = randomBytes(200_000);
    // Larger than loopback's socket buffers, so a client that stops reading leaves it unsent.
    const rootfs = Buffer.alloc(32 * 2 ** 20, 7);
    const image = writeFakeImage(join(work, 'compute@1'), { name: 'compute', version: '1', kernel, initrd: randomBytes(5000), rootfs });
    const t = await startTestAppliance({ modules: [createModule({ import: [image.dir] })] });
    // node:http, not fetch: fetch adds Cache-Control: no-cache to a conditional request, and then no 304.
    const get = (path: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        httpGet(`${t.appliance.url}${path}`, { headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
        }).on('error', reject);
      });
    const lines = async () => ((await t.api('GET', '/metrics')).body as string).split('\n');
    try {
      expect((await get('/images/compute/1/vmlinuz')).body.length).toBe(kernel.length);
      expect((await get('/images/compute/1/vmlinuz', { 'if-none-match': `"${sha256(kernel)}"` })).status).toBe(304);
      expect((await get('/images/compute/1/initrd.img', { range: 'bytes=0-99' })).status).toBe(206);
      expect((await get('/images/compute/1/initrd.img', { range: 'bytes=9000-' })).status).toBe(416);
      expect((await get('/images/compute/1/image.json')).status).toBe(404);

      // A node that goes away after the first bytes of its root image.
      const socket = connect(Number(new URL(t.appliance.url).port), '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('GET /images/compute/1/root.squashfs HTTP/1.1\r\nhost: x\r\n\r\n');
      await new Promise((resolve) => socket.once('data', resolve));
      socket.destroy();
      const aborted = 'shoal_image_requests_total{route="rootfs",outcome="aborted"} 1';
      for (let i = 0; i < 100 && !(await lines()).includes(aborted); i++) await new Promise((r) => setTimeout(r, 20));

      expect(await lines()).toEqual(
        expect.arrayContaining([
          'shoal_image_requests_total{route="kernel",outcome="full"} 1',
          'shoal_image_requests_total{route="kernel",outcome="not-modified"} 1',
          'shoal_image_requests_total{route="initrd",outcome="partial"} 1',
          'shoal_image_requests_total{route="initrd",outcome="unsatisfiable"} 1',
          'shoal_image_requests_total{route="unknown",outcome="not-found"} 1',
          aborted,
          `shoal_image_bytes_total{route="kernel"} ${kernel.length}`,
          'shoal_image_bytes_total{route="initrd"} 100',
          'shoal_image_range_requests_total{outcome="partial"} 1',
          'shoal_image_range_requests_total{outcome="unsatisfiable"} 1',
        ]),
      );
      expect((await lines()).filter((l) => l.startsWith('shoal_image_bytes_total{route="rootfs"}'))).toEqual([]);
    } finally {
      await t.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
