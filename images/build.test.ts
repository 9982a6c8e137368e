// Builds the real images from Debian packages, twice, and checks they are reproducible and
// distinct; then boots one under QEMU (no network at all) in self-test mode.
// Needs apt and the Debian archive (or a warm cache); SHOAL_IMAGE_TESTS=0 skips it.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../test/support/environment.js';
import { buildImages, prepareInputs, type BuiltImage } from './builder.js';
import { DEFAULT_CACHE_DIR, ensureImages } from './catalog.js';
import { DebianToolError } from './debian.js';
import { parseStoredManifest } from '../modules/images/manifest.js';
import { imageDigest, parseManifest } from './manifest.js';
import { KERNEL_MODULES } from './recipes.js';

const REFS = ['compute@1', 'compute@2', 'compute@3'];
const CACHE_DIR = process.env.SHOAL_IMAGE_CACHE ?? DEFAULT_CACHE_DIR;
const SELFTEST_TIMEOUT_MS = 120_000;

/** Why the suite cannot run here, or '' when it can. Fetching the packages is the real probe. */
async function unavailable(): Promise<string> {
  if (process.env.SHOAL_IMAGE_TESTS === '0') return 'SHOAL_IMAGE_TESTS=0';
  const tools = requirements({ commands: ['apt-get', 'apt-cache', 'dpkg', 'busybox'] });
  if (!tools.ok) return tools.reason;
  try {
    await prepareInputs(CACHE_DIR, (line) => console.log(`[images] ${line}`));
    return '';
  } catch (error) {
    if (error instanceof DebianToolError) return `Debian packages unavailable: ${error.message}`;
    throw error;
  }
}
const skipReason = await unavailable();
const skip = skipUnless('image build', { ok: skipReason === '', reason: skipReason });

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe.skipIf(skip)('node image build', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-images-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  let first: BuiltImage[] = [];

  it('is reproducible: two builds give the same bytes, and the three images differ', { timeout: 180_000 }, async () => {
    let started = performance.now();
    first = await buildImages(REFS, { outDir: tempDir(), cacheDir: CACHE_DIR });
    console.log(`[images] first build of ${REFS.join(', ')} (warm package cache): ${seconds(performance.now() - started)}`);
    started = performance.now();
    const second = await buildImages(REFS, { outDir: tempDir(), cacheDir: CACHE_DIR });
    console.log(`[images] second build: ${seconds(performance.now() - started)}`);

    for (const [index, image] of first.entries()) {
      const again = second[index]!;
      expect(again.manifest).toEqual(image.manifest);
      // The manifest tells the truth about the files, and the files themselves are identical.
      expect(sha256(image.kernelPath)).toBe(image.manifest.kernel.sha256);
      expect(image.manifest.kernelSigned, "Debian's kernel, as shipped, keeps its signature (Secure Boot needs it)").toBe(true);
      expect(sha256(image.initrdPath)).toBe(image.manifest.initrd.sha256);
      expect(sha256(again.initrdPath)).toBe(sha256(image.initrdPath));
      if (image.rootfsPath) {
        expect(sha256(image.rootfsPath)).toBe(image.manifest.rootfs!.sha256);
        expect(sha256(again.rootfsPath!)).toBe(sha256(image.rootfsPath));
      }
      expect(parseManifest(readFileSync(join(image.dir, 'image.json'), 'utf8'), image.dir)).toEqual(image.manifest);
    }
    const [one, two, three] = first;
    expect([one!.manifest.name, one!.manifest.version, two!.manifest.version, three!.manifest.version]).toEqual(['compute', '1', '2', '3']);
    expect(new Set(first.map((i) => i.manifest.digest)).size).toBe(3);
    expect(new Set(first.map((i) => i.manifest.initrd.sha256)).size).toBe(3);
    expect(one!.manifest.kernel.sha256).toBe(two!.manifest.kernel.sha256);
    // Only compute@3 has a root filesystem.
    expect(first.map((i) => Boolean(i.manifest.rootfs))).toEqual([false, false, true]);
    expect(first.map((i) => Boolean(i.rootfsPath))).toEqual([false, false, true]);
  });

  it('covers the root filesystem in the digest, as the image store computes it', () => {
    for (const image of first) {
      const m = image.manifest;
      expect(m.digest).toBe(imageDigest({ kernelSha256: m.kernel.sha256, initrdSha256: m.initrd.sha256, rootfsSha256: m.rootfs?.sha256, cmdline: m.cmdline }));
      // The store accepts the manifest (it checks the digest itself) with the root filesystem in it.
      expect(parseStoredManifest(readFileSync(join(image.dir, 'image.json'), 'utf8'), image.dir).rootfs).toEqual(m.rootfs);
    }
    const three = first[2]!.manifest;
    expect(three.digest).not.toBe(imageDigest({ kernelSha256: three.kernel.sha256, initrdSha256: three.initrd.sha256, cmdline: three.cmdline }));
  });

  it('puts busybox, /init, the agent, the NIC and power-button modules and the image marker in the initramfs', () => {
    expect(first).toHaveLength(3);
    for (const image of first) {
      const cpio = gunzipSync(readFileSync(image.initrdPath));
      const listing = execFileSync('busybox', ['cpio', '-t'], { input: cpio, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }).split('\n');
      for (const path of ['init', 'bin/busybox', 'bin/sh', 'dev/console', 'usr/bin/shoal-agent', 'etc/udhcpc.script', 'etc/shoal-modules', 'etc/acpi/PWRF/00000080']) {
        expect(listing).toContain(path);
      }
      for (const module of KERNEL_MODULES) expect(listing.some((p) => p.endsWith(`/${module}.ko`))).toBe(true);

      const dir = tempDir();
      execFileSync('busybox', ['cpio', '-i', '-d', 'etc/shoal-image', 'usr/bin/shoal-agent'], { input: cpio, cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
      expect(readFileSync(join(dir, 'etc/shoal-image'), 'utf8')).toContain(`image=${image.ref}\n`);
      expect(readFileSync(join(dir, 'usr/bin/shoal-agent'), 'utf8')).toBe(readFileSync(new URL('./agent/shoal-agent.sh', import.meta.url), 'utf8'));
    }
  });

  it('puts the same system, and the marker that says it is the root filesystem, in compute@3\'s rootfs.tar.gz', () => {
    const image = first[2]!;
    const tar = gunzipSync(readFileSync(image.rootfsPath!));
    const listing = execFileSync('busybox', ['tar', '-t', '-v', '-f', '-'], { input: tar, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }).trim().split('\n');
    const paths = listing.map((l) => l.replace(/ -> .*/, '').split(/\s+/).at(-1)!);
    for (const path of ['init', 'bin/busybox', 'bin/sh', 'usr/bin/shoal-agent', 'etc/udhcpc.script', 'etc/shoal-modules', 'etc/shoal-image', 'etc/shoal-rootfs', 'etc/acpi/PWRF/00000080', 'proc/', 'sys/', 'dev/', 'tmp/']) {
      expect(paths).toContain(path);
    }
    for (const module of KERNEL_MODULES) expect(paths.some((p) => p.endsWith(`/${module}.ko`))).toBe(true);
    // Owned by root, one fixed time (SOURCE_DATE_EPOCH 0), in sorted order.
    for (const line of listing) expect(line).toMatch(/ 0\/0 .* 1970-01-01 /);
    expect(paths).toEqual([...paths].sort());

    const dir = tempDir();
    execFileSync('busybox', ['tar', '-x', '-f', '-', 'init', 'etc/shoal-rootfs', 'etc/shoal-image', 'usr/bin/shoal-agent'], { input: tar, cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
    expect(readFileSync(join(dir, 'etc/shoal-rootfs'), 'utf8')).toBe('rootfs=compute@3\n');
    expect(readFileSync(join(dir, 'etc/shoal-image'), 'utf8')).toContain('image=compute@3\n');
    expect(readFileSync(join(dir, 'init'), 'utf8')).toBe(readFileSync(new URL('./initramfs/init.sh', import.meta.url), 'utf8'));
    expect(readFileSync(join(dir, 'usr/bin/shoal-agent'), 'utf8')).toBe(readFileSync(new URL('./agent/shoal-agent.sh', import.meta.url), 'utf8'));

    // The initramfs has the mount point, and not the marker: /init there still has to switch root.
    const initramfs = execFileSync('busybox', ['cpio', '-t'], { input: gunzipSync(readFileSync(image.initrdPath)), encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }).split('\n');
    expect(initramfs).toContain('newroot');
    expect(initramfs).not.toContain('etc/shoal-rootfs');
  });

  it('ensureImages returns the same images, with their files, from the shared cache', { timeout: 180_000 }, async () => {
    const ensured = await ensureImages(['compute@2'], CACHE_DIR);
    expect(ensured.map((i) => i.ref)).toEqual(['compute@2']);
    expect(ensured[0]!.manifest).toEqual(first[1]!.manifest);
    expect(sha256(ensured[0]!.initrdPath)).toBe(first[1]!.manifest.initrd.sha256);
  });

  const noQemu = skipUnless('image self-test boot', requirements({ commands: ['qemu-system-x86_64'] }));
  it.skipIf(noQemu)('boots compute@1 under QEMU with no network and passes its self-test', { timeout: SELFTEST_TIMEOUT_MS + 30_000 }, async () => {
    const image = first[0]!;
    const started = performance.now();
    // -nic none: no network at all; the self-test needs none and must not get any.
    const qemu = spawn(
      'qemu-system-x86_64',
      ['-machine', 'pc', '-m', '256', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-nic', 'none', '-no-reboot',
        '-kernel', image.kernelPath, '-initrd', image.initrdPath, '-append', `${image.manifest.cmdline} shoal.selftest=1`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let console_ = '';
    let selftestMs: number | undefined;
    qemu.stdout.on('data', (chunk: Buffer) => {
      console_ += chunk.toString('utf8');
      if (selftestMs === undefined && console_.includes('SHOAL-SELFTEST-')) selftestMs = performance.now() - started;
    });
    qemu.stderr.on('data', (chunk: Buffer) => (console_ += chunk.toString('utf8')));
    const timer = setTimeout(() => qemu.kill('SIGKILL'), SELFTEST_TIMEOUT_MS);
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => qemu.on('exit', (code, signal) => resolve({ code, signal })));
    clearTimeout(timer);
    console.log(`[images] QEMU start to self-test line: ${selftestMs === undefined ? 'never' : seconds(selftestMs)}; to power-off: ${seconds(performance.now() - started)}`);

    expect(console_, console_).toMatch(/^SHOAL-SELFTEST-OK compute@1\r?$/m);
    // Powered itself off (QEMU exits 0) rather than being killed at the deadline.
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
