// The deploy image (deploy@1) carries Debian's zstd, which busybox lacks, so the agent can write a
// zstd disk image. zstd is dynamically linked: these tests check that the builder reads what an ELF
// asks the loader for, and that the files it collects are enough to run the program on its own, in
// a chroot holding nothing else (root only). The last test builds the real image from the Debian
// archive (or a warm cache) and runs zstd from inside its initramfs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../test/support/environment.js';
import { buildImages, elfDependencies, prepareInputs, programEntries } from './builder.js';
import { DEFAULT_CACHE_DIR } from './catalog.js';
import { DebianToolError } from './debian.js';
import type { CpioEntry } from './newc.js';

const hostTools = requirements({ root: true, commands: ['zstd', 'readelf', 'busybox'] });
const skip = skipUnless('deploy image', hostTools);

/** Writes ENTRIES under DIR, as the initramfs would unpack them. */
function unpack(entries: CpioEntry[], dir: string): void {
  for (const entry of entries) {
    const path = join(dir, entry.path);
    mkdirSync(dirname(path), { recursive: true });
    if (entry.kind === 'file') writeFileSync(path, entry.data, { mode: entry.mode });
    else if (entry.kind === 'symlink') symlinkSync(entry.target, path);
  }
}

/** What zstd run in a chroot of DIR prints, or the error when it does not start. */
function zstdIn(dir: string, ...args: string[]): string {
  try {
    return execFileSync('chroot', [dir, '/usr/bin/zstd', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    return `failed: ${(error as Error).message}`;
  }
}

describe.skipIf(skip)('deploy image: a program from a Debian package with its libraries', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-deploy-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('reads the interpreter and the NEEDED libraries of an ELF file as readelf does', () => {
    const elf = readFileSync('/usr/bin/zstd');
    const readelf = execFileSync('readelf', ['-d', '-l', '/usr/bin/zstd'], { encoding: 'utf8' });
    const needed = [...readelf.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    const interpreter = /Requesting program interpreter: ([^\]]+)\]/.exec(readelf)?.[1];
    expect(elfDependencies(elf, 'zstd')).toEqual({ interpreter, needed });
    expect(needed.length).toBeGreaterThan(0);
    expect(() => elfDependencies(Buffer.from('#!/bin/sh\n'.padEnd(80)), 'a script')).toThrow('a script is not a 64-bit little-endian ELF file');
  });

  it('collects the program, its libraries and the loader: enough to run it in an empty root', async () => {
    // This host is Debian too: its root stands in for the unpacked packages.
    const entries = await programEntries('/', 'usr/bin/zstd', ['/']);
    const paths = entries.map((e) => e.path);
    expect(paths).toContain('usr/bin/zstd');
    expect(paths).toContain('lib64/ld-linux-x86-64.so.2');
    expect(paths.some((p) => p.endsWith('/libc.so.6'))).toBe(true);
    expect(new Set(paths).size).toBe(paths.length);
    const root = tempDir();
    unpack(entries, root);
    expect(zstdIn(root, '-V')).toMatch(/Zstandard CLI/);

    // Without one of its libraries it does not start: the chroot really holds only what was collected.
    const withoutLibz = tempDir();
    unpack(entries.filter((e) => !/\/libz\.so/.test(e.path)), withoutLibz);
    expect(zstdIn(withoutLibz, '-V')).toMatch(/^failed: /);
  });

  it('fails the build naming a library none of the packages has', async () => {
    const empty = tempDir();
    await expect(programEntries('/', 'usr/bin/zstd', [empty])).rejects.toThrow(/^usr\/bin\/zstd needs ld-linux-x86-64\.so\.2, which none of its library packages has/);
  });
});

/** Why the real build cannot run here, or '' when it can (fetching the packages is the probe). */
async function archiveUnavailable(): Promise<string> {
  if (!hostTools.ok) return hostTools.reason;
  if (process.env.SHOAL_IMAGE_TESTS === '0') return 'SHOAL_IMAGE_TESTS=0';
  try {
    await prepareInputs(DEFAULT_CACHE_DIR);
    return '';
  } catch (error) {
    if (error instanceof DebianToolError) return `Debian packages unavailable: ${error.message}`;
    throw error;
  }
}
const archiveReason = await archiveUnavailable();

describe.skipIf(skipUnless('deploy image build', { ok: archiveReason === '', reason: archiveReason }))('deploy@1 from the Debian archive', () => {
  it('has zstd in its initramfs, and it unpacks a zstd stream there with busybox around it', { timeout: 300_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'shoal-deploy-build-'));
    try {
      const [image] = await buildImages(['deploy@1'], { outDir: join(out, 'images'), cacheDir: process.env.SHOAL_IMAGE_CACHE ?? DEFAULT_CACHE_DIR });
      const root = join(out, 'root');
      mkdirSync(root);
      execFileSync('busybox', ['cpio', '-id'], { cwd: root, input: gunzipSync(readFileSync(image!.initrdPath)), stdio: ['pipe', 'ignore', 'ignore'] });
      expect(readFileSync(join(root, 'etc/shoal-image'), 'utf8')).toContain('image=deploy@1\n');
      const packed = execFileSync('zstd', ['-q', '-c'], { input: 'a disk image\n' });
      const unpacked = execFileSync('chroot', [root, '/bin/busybox', 'sh', '-c', 'PATH=/usr/bin:/bin; command -v zstd && zstd -dc'], { input: packed, encoding: 'utf8' });
      expect(unpacked).toBe('/usr/bin/zstd\na disk image\n');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
