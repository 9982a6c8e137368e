// OCI import for real: container images made here with Debian's umoci (a busybox tree with
// /sbin/init, with and without a kernel in /boot) are imported through skopeo and umoci into
// Shoal images, whose manifest, squashfs and recorded source digest are checked; images Shoal
// cannot boot (another architecture, no init, no kernel, not an archive, a tampered blob, a layer
// escaping the root) are refused with their reason, leaving the output directory as it was.
// Needs skopeo, umoci, squashfs-tools, GNU tar and apt's lists (busybox-static for the initramfs).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseStoredManifest } from '../modules/images/manifest.js';
import { requirements, skipUnless } from '../test/support/environment.js';
import { addImage, busyboxInit, kernelFiles, newLayout, runTool } from '../test/support/oci-images.js';
import type { BuiltImage } from './builder.js';
import { DEFAULT_CACHE_DIR } from './catalog.js';
import { sha256File } from './debian.js';
import { imageDigest } from './manifest.js';
import { entryProblem, walkTar } from './oci-layout.js';
import { importOciImage, OciImageError, type OciImportRequest } from './oci-import.js';

const CACHE_DIR = process.env.SHOAL_IMAGE_CACHE ?? DEFAULT_CACHE_DIR;
const MINUTE = 60_000;
const skip = skipUnless('OCI import', requirements({ commands: ['skopeo', 'umoci', 'mksquashfs', 'unsquashfs', 'tar', 'apt-cache', 'busybox'] }));
const run = runTool;

describe.skipIf(skip)('OCI import', { timeout: 10 * MINUTE }, () => {
  let work: string;
  let layout: string;
  let out: string;
  let release: string;
  let withKernel: BuiltImage;
  const progress: string[] = [];
  const options = () => ({ outDir: out, cacheDir: CACHE_DIR, progress: (l: string) => progress.push(l) });
  const manifestDigest = (tag: string) => {
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    return index.manifests.find((m) => m.annotations['org.opencontainers.image.ref.name'] === tag)!.digest;
  };
  const makeImage = (tag: string, fill: (rootfs: string) => void) => addImage(layout, work, tag, fill);
  const outEntries = () => readdirSync(out).sort();
  /** Imports `request`, expecting a refusal; returns its message after checking nothing was left. */
  const refusal = async (request: OciImportRequest) => {
    const before = outEntries();
    const error = await importOciImage(request, options()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OciImageError);
    expect((error as Error).message).toContain(`cannot import ${request.source}: `);
    expect(outEntries()).toEqual(before);
    return (error as Error).message;
  };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'shoal-oci-'));
    layout = join(work, 'layout');
    out = join(work, 'images');
    mkdirSync(out);
    newLayout(layout);
    const withInit = await busyboxInit(CACHE_DIR);
    makeImage('kernel', (rootfs) => {
      withInit(rootfs);
      release = kernelFiles(CACHE_DIR, rootfs);
    });
    makeImage('nokernel', withInit);
    makeImage('noinit', (rootfs) => writeFileSync(join(rootfs, 'hello'), 'no init here\n'));
    run('umoci', ['config', '--image', `${layout}:nokernel`, '--architecture', 'arm64', '--tag', 'arm64']);
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('imports an image with its own kernel: kernel, initramfs with its modules, squashfs root, source digest recorded', async () => {
    withKernel = await importOciImage({ source: `oci:${layout}:kernel`, name: 'busybox-oci', version: '1' }, options());
    const m = withKernel.manifest;
    expect(withKernel.dir).toBe(join(out, 'busybox-oci@1'));
    expect(outEntries()).toEqual(['busybox-oci@1']);
    expect(m.builtFrom.oci).toEqual({ source: `oci:${layout}:kernel`, manifestDigest: manifestDigest('kernel'), configDigest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
    expect(m.builtFrom.kernelRelease).toBe(release);
    expect(m.kernel.sha256).toBe(await sha256File(join(withKernel.dir, 'vmlinuz')));
    expect(m.rootfs).toEqual({ file: 'root.squashfs', sha256: await sha256File(withKernel.rootfsPath!), size: expect.any(Number) });
    expect(m.digest).toBe(imageDigest({ kernelSha256: m.kernel.sha256, initrdSha256: m.initrd.sha256, rootfsSha256: m.rootfs!.sha256, cmdline: m.cmdline }));
    // The image store takes it as it is.
    expect(parseStoredManifest(readFileSync(join(withKernel.dir, 'image.json'), 'utf8'), withKernel.dir).digest).toBe(m.digest);

    const listing = run('unsquashfs', ['-l', '-d', '', withKernel.rootfsPath!]).split('\n');
    for (const path of ['/sbin/init', '/bin/busybox', '/etc/shoal-image', `/boot/vmlinuz-${release}`, `/lib/modules/${release}/modules.dep`]) expect(listing).toContain(path);
    // The agent, as a recipe build has it: its script, its unit enabled, its own busybox.
    for (const path of [
      '/usr/bin/shoal-agent',
      '/etc/systemd/system/shoal-agent.service',
      '/etc/systemd/system/shoal-agent.service.d/10-shoal-import.conf',
      '/etc/systemd/system/multi-user.target.wants/shoal-agent.service',
      '/etc/systemd/system/shoal-workload.target',
      '/usr/lib/shoal-agent/bin/busybox',
      '/usr/lib/shoal-agent/bin/wget',
    ]) {
      expect(listing).toContain(path);
    }
    expect(run('unsquashfs', ['-cat', withKernel.rootfsPath!, '/usr/bin/shoal-agent'])).toBe(readFileSync(new URL('./agent/shoal-agent.sh', import.meta.url), 'utf8'));
    expect(run('unsquashfs', ['-cat', withKernel.rootfsPath!, '/etc/systemd/system/shoal-agent.service.d/10-shoal-import.conf'])).toMatch(/^ExecStart=\/usr\/lib\/shoal-agent\/bin\/busybox sh \/usr\/bin\/shoal-agent$/m);
    const shoalImage = run('unsquashfs', ['-cat', withKernel.rootfsPath!, '/etc/shoal-image']);
    expect(shoalImage).toContain('image=busybox-oci@1\n');
    expect(shoalImage).toContain(`kernel=${release}\n`);

    const initramfs = execFileSync('busybox', ['cpio', '-t'], { input: gunzipSync(readFileSync(withKernel.initrdPath)), encoding: 'utf8' }).split('\n');
    for (const name of ['squashfs', 'overlay', 'virtio_net']) {
      expect(initramfs.some((p) => p.startsWith(`lib/modules/${release}/`) && p.endsWith(`/${name}.ko`)) || !m.builtFrom.modules.includes(name), name).toBe(true);
    }
    expect(initramfs).toContain('init');
    // The long steps were reported.
    for (const step of [/copying oci:.* \(skopeo\)/, /checking layer 1\/1/, /unpacking \(umoci\)/, /writing root\.squashfs/]) expect(progress.some((l) => step.test(l)), String(step)).toBe(true);
  });

  it('takes the kernel and its modules from another image when the container has none (--kernel-from)', async () => {
    const image = await importOciImage({ source: `oci:${layout}:nokernel`, name: 'busybox-oci', version: '2', kernelFrom: 'busybox-oci@1' }, options());
    const m = image.manifest;
    expect(m.kernel.sha256).toBe(withKernel.manifest.kernel.sha256);
    expect(m.builtFrom.oci?.kernelFrom).toEqual({ image: 'busybox-oci@1', digest: withKernel.manifest.digest });
    expect(m.builtFrom.oci?.manifestDigest).toBe(manifestDigest('nokernel'));
    const listing = run('unsquashfs', ['-l', '-d', '', image.rootfsPath!]).split('\n');
    // The modules are in the root too, so the booted system can load drivers; the kernel itself is not.
    expect(listing).toContain(`/lib/modules/${release}/modules.dep`);
    expect(listing.filter((p) => p.startsWith('/boot/vmlinuz'))).toEqual([]);
    expect(m.builtFrom.modules).toEqual(withKernel.manifest.builtFrom.modules);
  });

  it('imports a path: an OCI layout directory, an OCI archive and a docker save archive, named after the file when no name is given', async () => {
    const ociArchive = join(work, 'site-compute.tar');
    const dockerArchive = join(work, 'site-docker.tar');
    run('skopeo', ['copy', '--quiet', `oci:${layout}:kernel`, `oci-archive:${ociArchive}`]);
    run('skopeo', ['copy', '--quiet', `oci:${layout}:kernel`, `docker-archive:${dockerArchive}:site/compute:1`]);
    const fromArchive = await importOciImage({ source: ociArchive }, options());
    expect(fromArchive.ref).toBe(`site-compute@${fromArchive.manifest.builtFrom.oci!.manifestDigest.slice(7, 19)}`);
    expect(fromArchive.manifest.builtFrom.oci!.source).toBe(ociArchive);
    // The same content as the layout it was copied from.
    expect(fromArchive.manifest.builtFrom.oci!.manifestDigest).toBe(manifestDigest('kernel'));

    const fromDocker = await importOciImage({ source: dockerArchive, name: 'from-docker', version: '1' }, options());
    expect(fromDocker.ref).toBe('from-docker@1');
    expect(run('unsquashfs', ['-l', '-d', '', fromDocker.rootfsPath!]).split('\n')).toContain('/usr/bin/shoal-agent');

    const single = join(work, 'single');
    run('skopeo', ['copy', '--quiet', `oci:${layout}:kernel`, `oci:${single}:only`]);
    expect((await importOciImage({ source: single, version: '1' }, options())).ref).toBe('single@1');
  });

  it('imports layers as umoci insert writes them (the root as "/", no end-of-archive blocks) and applies their whiteouts', async () => {
    // A tree added in one layer at /, then a whiteout layer removing one of its files.
    const tree = join(work, 'insert-tree');
    (await busyboxInit(CACHE_DIR))(tree);
    kernelFiles(CACHE_DIR, tree);
    mkdirSync(join(tree, 'etc'), { recursive: true });
    writeFileSync(join(tree, 'etc', 'site-secret'), 'removed by the next layer\n');
    // As in a tree made from a Shoal image (debian@12's): the agent's bin directory is there already.
    mkdirSync(join(tree, 'usr/lib/shoal-agent/bin'), { recursive: true });
    symlinkSync('/bin/busybox', join(tree, 'usr/lib/shoal-agent/bin/wget'));
    run('umoci', ['new', '--image', `${layout}:inserted`]);
    run('umoci', ['insert', '--image', `${layout}:inserted`, tree, '/']);
    run('umoci', ['insert', '--image', `${layout}:inserted`, '--whiteout', '/etc/site-secret']);
    const image = await importOciImage({ source: `oci:${layout}:inserted`, name: 'inserted', version: '1' }, options());
    const listing = run('unsquashfs', ['-l', '-d', '', image.rootfsPath!]).split('\n');
    expect(listing).toContain('/sbin/init');
    expect(listing).toContain('/usr/bin/shoal-agent');
    expect(listing).not.toContain('/etc/site-secret');
    expect(listing.filter((p) => p.includes('.wh.'))).toEqual([]);
    expect(run('unsquashfs', ['-lls', '-d', '', image.rootfsPath!, '/usr/lib/shoal-agent/bin/wget'])).toMatch(/\/usr\/lib\/shoal-agent\/bin\/wget -> busybox$/m);
  });

  it('refuses a path that is no image: a plain directory, a compressed archive, a tar of something else', async () => {
    const plain = join(work, 'plain');
    mkdirSync(plain);
    expect(await refusal({ source: plain })).toMatch(/is a directory but not an OCI image layout \(it has no oci-layout file\)/);
    const gz = join(work, 'image.tar.gz');
    writeFileSync(gz, gzipSync(Buffer.from('x')));
    expect(await refusal({ source: gz })).toMatch(/is gzip-compressed; decompress it first/);
    const other = join(work, 'other.tar');
    execFileSync('tar', ['-cf', other, '-C', plain, '.']);
    expect(await refusal({ source: other })).toMatch(/neither an OCI image archive \(no oci-layout in it\) nor a docker save archive/);
    expect(await refusal({ source: join(work, 'missing.tar') })).toMatch(/missing\.tar: no such file or directory/);
  });

  it('refuses an image with no kernel and no --kernel-from, saying how to give one', async () => {
    expect(await refusal({ source: `oci:${layout}:nokernel`, name: 'refused', version: '1' })).toMatch(/the image has no kernel \(\/boot\/vmlinuz-\*\).*--kernel-from IMAGE/);
    expect(await refusal({ source: `oci:${layout}:nokernel`, name: 'refused', version: '1', kernelFrom: 'debian@99' })).toMatch(/--kernel-from debian@99: no built image there/);
  });

  it('refuses an image for another architecture', async () => {
    expect(await refusal({ source: `oci:${layout}:arm64`, name: 'refused', version: '1' })).toMatch(/the image is for linux\/arm64; Shoal nodes boot linux\/amd64/);
  });

  it('refuses an image without /sbin/init unless --init names one', async () => {
    expect(await refusal({ source: `oci:${layout}:noinit`, name: 'refused', version: '1', kernelFrom: 'busybox-oci@1' })).toMatch(/the image has no init .*--init PATH/);
    expect(await refusal({ source: `oci:${layout}:noinit`, name: 'refused', version: '1', kernelFrom: 'busybox-oci@1', init: '/hello' })).toMatch(/--init \/hello is not an executable file in the image/);
    const image = await importOciImage({ source: `oci:${layout}:kernel`, name: 'busybox-oci', version: '3', init: '/bin/busybox' }, options());
    expect(run('unsquashfs', ['-lls', '-d', '', image.rootfsPath!, '/sbin/init'])).toMatch(/\/sbin\/init -> \/bin\/busybox$/m);
  });

  it('refuses an oci-archive that is not a tar, and a layout with a tampered blob', async () => {
    const notTar = join(work, 'not-a-tar.tar');
    writeFileSync(notTar, 'this is not an archive\n');
    expect(await refusal({ source: `oci-archive:${notTar}`, name: 'refused', version: '1' })).toMatch(/skopeo copy failed .*(untarring|tar|EOF)/i);

    const tampered = join(work, 'tampered');
    cpSync(layout, tampered, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(tampered, 'blobs/sha256', manifestDigest('kernel').slice(7)), 'utf8')) as { layers: { digest: string }[] };
    const blob = join(tampered, 'blobs/sha256', manifest.layers[0]!.digest.slice(7));
    const bytes = readFileSync(blob);
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(blob, bytes);
    expect(await refusal({ source: `oci:${tampered}:kernel`, name: 'refused', version: '1' })).toMatch(/[Dd]igest did not match|does not match its digest/);
  });

  it('refuses a layer whose entries escape the root or hold devices outside /dev', async () => {
    // GNU tar with -P keeps absolute and .. names, as a hostile layer would have them.
    const dir = join(work, 'escape');
    mkdirSync(join(dir, 'inner'), { recursive: true });
    writeFileSync(join(dir, 'secret'), 'x');
    const names = (args: string[]) => {
      const tar = join(work, `escape-${createHash('sha256').update(args.join()).digest('hex').slice(0, 8)}.tar`);
      execFileSync('tar', ['-cf', tar, '-P', ...args], { cwd: join(dir, 'inner') });
      return readFileSync(tar);
    };
    const problems = async (tar: Buffer) => {
      const found: string[] = [];
      await walkTar([tar], (entry) => {
        const problem = entryProblem(entry);
        if (problem) found.push(problem);
      });
      return found;
    };
    expect(await problems(names(['../secret']))).toEqual(['"../secret" is a path with ..']);
    expect(await problems(names([join(dir, 'secret')]))).toEqual([`"${join(dir, 'secret')}" is an absolute path`]);
    expect(entryProblem({ path: 'etc/passwd', type: '1', linkPath: '/etc/shadow' })).toMatch(/hard link to "\/etc\/shadow", outside the root/);
    expect(entryProblem({ path: 'opt/sda', type: '4', linkPath: '' })).toMatch(/block device outside \/dev/);
    expect(entryProblem({ path: './dev/null', type: '3', linkPath: '' })).toBeUndefined();
    // The root directory as umoci insert writes it; a file named "/" is no such thing.
    expect(entryProblem({ path: '/', type: '5', linkPath: '' })).toBeUndefined();
    expect(entryProblem({ path: '/', type: '0', linkPath: '' })).toMatch(/absolute path/);
    expect(entryProblem({ path: 'usr/bin/sh', type: '2', linkPath: '/bin/busybox' })).toBeUndefined();
    await expect(walkTar([Buffer.from('not a tar'.padEnd(1024, '!'))], () => {})).rejects.toThrow(/not a tar archive/);
    // As umoci insert writes a layer: no end-of-archive blocks after the last entry. Cut inside an entry, it is refused.
    const whole = names(['../secret']);
    const lastEntryEnd = 1024; // one header and one block of data
    const seen: string[] = [];
    await walkTar([whole.subarray(0, lastEntryEnd)], (entry) => void seen.push(entry.path));
    expect(seen).toEqual(['../secret']);
    await expect(walkTar([whole.subarray(0, lastEntryEnd - 100)], () => {})).rejects.toThrow(/ends inside an entry/);
  });
});
