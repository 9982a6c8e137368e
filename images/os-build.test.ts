// OS images for real: mmdebstrap against the Debian mirror. A recipe naming a package that does
// not exist fails fast, naming the package and the mirror, and leaves no tree behind; debian@12
// builds (the first time downloads ~300 MB; later runs reuse the cached tree and squashfs) into a
// kernel from its own /boot, a busybox initramfs with its own loop, squashfs and overlay modules,
// and a squashfs root with /sbin/init, whose size and sha256 are in the manifest and the digest.
// Needs root, mmdebstrap, squashfs-tools and the mirror; SHOAL_IMAGE_TESTS=0 skips it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { parseStoredManifest } from '../modules/images/manifest.js';
import { requirements, skipUnless } from '../test/support/environment.js';
import type { BuiltImage } from './builder.js';
import { DEFAULT_CACHE_DIR, ensureImages } from './catalog.js';
import { sha256File } from './debian.js';
import { imageDigest } from './manifest.js';
import { ensureRootTree, RootTreeError, treeKey } from './mmdebstrap.js';
import { parseOsRecipe } from './os-recipe.js';
import { writeSquashfs } from './squashfs.js';

const CACHE_DIR = process.env.SHOAL_IMAGE_CACHE ?? DEFAULT_CACHE_DIR;
const MINUTE = 60_000;
const skip =
  process.env.SHOAL_IMAGE_TESTS === '0'
    ? skipUnless('OS image build', { ok: false, reason: 'SHOAL_IMAGE_TESTS=0' })
    : skipUnless('OS image build', requirements({ root: true, commands: ['mmdebstrap', 'mksquashfs', 'unsquashfs', 'dpkg-query', 'busybox'] }));

describe.skipIf(skip)('OS images built by mmdebstrap', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-os-image-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('fails fast on a package the mirror does not have, naming it and the mirror, and caches nothing', { timeout: 10 * MINUTE }, async () => {
    const cacheDir = tempDir();
    const recipe = parseOsRecipe(
      'name: broken\nversion: "1"\ndescription: names a package that does not exist\nsuite: bookworm\npackages: [linux-image-amd64, shoal-no-such-package]\ncmdline: console=ttyS0\n',
      join(cacheDir, 'broken.yaml'),
    );
    const progress: string[] = [];
    const started = performance.now();
    const error = await ensureRootTree(recipe, cacheDir, 0, (l) => progress.push(l)).catch((e: unknown) => e);
    console.log(`[os-images] a missing package failed the build in ${((performance.now() - started) / 1000).toFixed(1)} s: ${(error as Error).message}`);
    expect(error).toBeInstanceOf(RootTreeError);
    expect((error as Error).message).toMatch(/package shoal-no-such-package is not in bookworm \(main\) at http:\/\/deb\.debian\.org\/debian/);
    // mmdebstrap's stages were reported as it went.
    expect(progress.some((l) => /broken@1: mmdebstrap: running apt-get update/.test(l))).toBe(true);
    expect(readdirSync(join(cacheDir, 'debian', 'trees'))).toEqual([]);
    expect(existsSync(join(cacheDir, 'debian', 'trees', treeKey(recipe, 0)))).toBe(false);
  });

  let image: BuiltImage;

  it('builds debian@12: its own kernel, the busybox initramfs with its own modules, a squashfs root with /sbin/init', { timeout: 60 * MINUTE }, async () => {
    const started = performance.now();
    [image] = (await ensureImages(['debian@12'], CACHE_DIR)) as [BuiltImage];
    console.log(`[os-images] debian@12 ready in ${((performance.now() - started) / 1000).toFixed(1)} s (a cold build downloads and runs mmdebstrap; a warm one reuses the cached tree and squashfs)`);
    const m = image.manifest;
    expect(image.ref).toBe('debian@12');
    expect(m.rootfs).toEqual({ file: 'root.squashfs', sha256: await sha256File(image.rootfsPath!), size: statSync(image.rootfsPath!).size });
    expect(m.kernel.sha256).toBe(await sha256File(image.kernelPath));
    expect(m.digest).toBe(imageDigest({ kernelSha256: m.kernel.sha256, initrdSha256: m.initrd.sha256, rootfsSha256: m.rootfs!.sha256, cmdline: m.cmdline }));
    // The image store takes it as it is.
    expect(parseStoredManifest(readFileSync(join(image.dir, 'image.json'), 'utf8'), image.dir).rootfs).toEqual(m.rootfs);

    const listing = execFileSync('unsquashfs', ['-l', '-d', '', image.rootfsPath!], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }).split('\n');
    // Debian 12 has merged /usr: /sbin is a link to usr/sbin, so /sbin/init is /usr/sbin/init there.
    const links = execFileSync('unsquashfs', ['-lls', '-d', '', image.rootfsPath!, '/sbin'], { encoding: 'utf8' });
    expect(links).toMatch(/^l\S* .* \/sbin -> usr\/sbin$/m);
    expect(listing).toContain('/usr/sbin/init');
    const kernels = listing.filter((p) => /^\/boot\/vmlinuz-/.test(p));
    expect(kernels).toEqual([`/boot/vmlinuz-${m.builtFrom.kernelRelease}`]);
    for (const path of ['/usr/bin/shoal-agent', '/etc/systemd/system/shoal-agent.service', '/etc/systemd/system/multi-user.target.wants/shoal-agent.service', '/etc/shoal-image', '/usr/sbin/sshd', '/usr/bin/cloud-init']) {
      expect(listing).toContain(path);
    }
    // Debian's own initramfs is not shipped: the Shoal one boots the image.
    expect(listing.filter((p) => p.startsWith('/boot/initrd.img'))).toEqual([]);

    // The kernel is the image's own: the same bytes as its /boot/vmlinuz-<release>.
    const treeDir = join(CACHE_DIR, 'debian', 'trees', m.builtFrom.recipe!.treeKey);
    expect(await sha256File(join(treeDir, 'boot', `vmlinuz-${m.builtFrom.kernelRelease}`))).toBe(m.kernel.sha256);
    const initramfs = execFileSync('busybox', ['cpio', '-t'], { input: gunzipSync(readFileSync(image.initrdPath)), encoding: 'utf8' }).split('\n');
    for (const name of ['loop', 'squashfs', 'overlay', 'virtio_net']) {
      expect(initramfs.some((p) => p.startsWith(`lib/modules/${m.builtFrom.kernelRelease}/`) && p.endsWith(`/${name}.ko`)), name).toBe(true);
    }
    // /init loads exactly the modules the initramfs carries, and the manifest names them.
    const extracted = tempDir();
    execFileSync('busybox', ['cpio', '-i', '-d', 'etc/shoal-modules'], { input: gunzipSync(readFileSync(image.initrdPath)), cwd: extracted });
    const loads = readFileSync(join(extracted, 'etc/shoal-modules'), 'utf8').trim().split('\n');
    expect(loads.map((p) => p.slice(1)).sort()).toEqual(initramfs.filter((p) => p.endsWith('.ko')).sort());
    expect(loads.map((p) => p.split('/').at(-1)!.replace(/\.ko$/, ''))).toEqual(m.builtFrom.modules);
    for (const name of ['loop', 'squashfs', 'overlay']) expect(m.builtFrom.modules).toContain(name);
    expect(initramfs).toContain('init');
  });

  it('writes the same squashfs from the same tree: sorted entries, fixed times', { timeout: 30 * MINUTE }, async () => {
    const treeDir = join(CACHE_DIR, 'debian', 'trees', image.manifest.builtFrom.recipe!.treeKey);
    const again = join(tempDir(), 'again.squashfs');
    await writeSquashfs(treeDir, again, image.manifest.builtFrom.sourceDateEpoch);
    expect(await sha256File(again)).toBe(image.manifest.rootfs!.sha256);
    const times = execFileSync('unsquashfs', ['-lls', '-d', '', again, '/etc'], { encoding: 'utf8' });
    expect(times).toMatch(/ 1970-01-01 00:00 \/etc\n/);
  });
});
