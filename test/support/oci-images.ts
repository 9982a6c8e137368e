// Container images for the import tests, made with Debian's umoci (a tool no one here wrote): a
// layout with images of a busybox tree with /sbin/init, with or without a kernel in /boot.
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { prepareBusybox } from '../../images/builder.js';
import { modulesToLoad } from '../../images/kernel-modules.js';
import { OS_INITRAMFS_MODULES } from '../../images/os-builder.js';

const rootless = process.getuid?.() !== 0 ? ['--rootless'] : [];
export const runTool = (command: string, args: string[]) => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** An empty OCI layout at `layout`. */
export function newLayout(layout: string): void {
  runTool('umoci', ['init', '--layout', layout]);
}

/** A new tag in the layout: an empty image with the files `fill` puts in its root. */
export function addImage(layout: string, work: string, tag: string, fill: (rootfs: string) => void): void {
  const bundle = join(work, `bundle-${tag}`);
  runTool('umoci', ['new', '--image', `${layout}:${tag}`]);
  runTool('umoci', ['unpack', ...rootless, '--image', `${layout}:${tag}`, bundle]);
  fill(join(bundle, 'rootfs'));
  runTool('umoci', ['repack', '--image', `${layout}:${tag}`, bundle]);
}

/** Fills a root with busybox-static as /bin/busybox and /sbin/init (fetched once into `cacheDir`). */
export async function busyboxInit(cacheDir: string): Promise<(rootfs: string) => void> {
  const { busyboxTree } = await prepareBusybox(cacheDir);
  return (rootfs) => {
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    copyFileSync(join(busyboxTree, 'bin/busybox'), join(rootfs, 'bin/busybox'));
    execFileSync('chmod', ['0755', join(rootfs, 'bin/busybox')]);
    mkdirSync(join(rootfs, 'sbin'), { recursive: true });
    execFileSync('ln', ['-sf', '/bin/busybox', join(rootfs, 'sbin/init')]);
  };
}

/**
 * Puts a kernel in a root's /boot and returns its release: Debian's from the image cache when a
 * busybox build left it there (only the modules the initramfs takes), else a stand-in.
 */
export function kernelFiles(cacheDir: string, into: string): string {
  const unpacked = join(cacheDir, 'unpacked');
  const debianKernel = existsSync(unpacked) ? readdirSync(unpacked).find((d) => d.startsWith('linux-image-')) : undefined;
  if (debianKernel) {
    const from = join(unpacked, debianKernel);
    const release = readdirSync(join(from, 'boot')).find((f) => f.startsWith('vmlinuz-'))!.slice('vmlinuz-'.length);
    const modules = join(from, 'lib/modules', release);
    mkdirSync(join(into, 'boot'), { recursive: true });
    copyFileSync(join(from, 'boot', `vmlinuz-${release}`), join(into, 'boot', `vmlinuz-${release}`));
    // The package ships no modules.dep (depmod makes it on install): list the wanted modules, without
    // their dependencies, which an import that is never booted does not need.
    const builtin = readFileSync(join(modules, 'modules.builtin'), 'utf8');
    const wanted = new Set(OS_INITRAMFS_MODULES.map((n) => `${n.replaceAll('-', '_')}.ko`));
    const dep = readFileSync(join(modules, 'modules.order'), 'utf8')
      .split('\n')
      .filter((path) => wanted.has(path.split('/').pop()!.replaceAll('-', '_')))
      .map((path) => `${path}:\n`)
      .join('');
    const target = join(into, 'lib/modules', release);
    for (const path of modulesToLoad(OS_INITRAMFS_MODULES, dep, builtin, release)) cpSync(join(modules, path), join(target, path));
    writeFileSync(join(target, 'modules.dep'), dep);
    writeFileSync(join(target, 'modules.builtin'), builtin);
    return release;
  }
  const release = '6.1.0-0-fake';
  mkdirSync(join(into, 'boot'), { recursive: true });
  writeFileSync(join(into, 'boot', `vmlinuz-${release}`), 'not a kernel, but bytes to boot');
  const dir = join(into, 'lib/modules', release);
  mkdirSync(join(dir, 'kernel'), { recursive: true });
  for (const name of OS_INITRAMFS_MODULES) writeFileSync(join(dir, 'kernel', `${name}.ko`), `module ${name}`);
  writeFileSync(join(dir, 'modules.dep'), OS_INITRAMFS_MODULES.map((n) => `kernel/${n}.ko:\n`).join(''));
  writeFileSync(join(dir, 'modules.builtin'), '');
  return release;
}
