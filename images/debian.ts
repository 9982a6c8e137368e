// Debian packages as build inputs: resolve a package to the exact version apt would install,
// download its .deb into a cache (verified against the archive's SHA256), unpack it once.
// Only apt-get/apt-cache/dpkg touch the network or the package lists; everything is cached
// under `cacheDir`, so a rebuild with warm caches needs no network at all.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface DebianPackage {
  name: string;
  version: string;
  /** SHA256 of the .deb as the archive's package index lists it. */
  sha256: string;
}

/** A Debian tool failed; `message` says which command and why, with its stderr. */
export class DebianToolError extends Error {}

async function run(command: string, args: string[], cwd?: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { cwd, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
    return stdout;
  } catch (error) {
    const e = error as { code?: unknown; stderr?: string; message: string };
    const detail = e.code === 'ENOENT' ? `${command} is not installed` : (e.stderr ?? '').trim() || e.message;
    throw new DebianToolError(`${command} ${args.join(' ')} failed: ${detail}`);
  }
}

/** The linux-image-<release>-amd64 package the `linux-image-amd64` metapackage currently points at. */
export async function resolveKernelPackageName(): Promise<string> {
  const out = await run('apt-cache', ['depends', 'linux-image-amd64']);
  const match = /^\s*Depends:\s*(linux-image-\d+\.\d+\.\d+-\d+-amd64)\s*$/m.exec(out);
  if (!match?.[1]) {
    throw new DebianToolError(`apt-cache depends linux-image-amd64 names no linux-image-<release>-amd64 package (run apt-get update?):\n${out}`);
  }
  return match[1];
}

/** The candidate versions apt would install, with the archive's SHA256 of each .deb (one apt-cache run: it is slow). */
export async function resolvePackages(names: readonly string[]): Promise<DebianPackage[]> {
  const out = await run('apt-cache', ['show', '--no-all-versions', ...names]);
  const records = out.split(/\n\s*\n/);
  return names.map((name) => {
    const record = records.find((r) => new RegExp(`^Package: ${name.replace(/[.+]/g, '\\$&')}$`, 'm').test(r)) ?? '';
    const version = /^Version: (\S+)$/m.exec(record)?.[1];
    const sha256 = /^SHA256: ([0-9a-f]{64})$/m.exec(record)?.[1];
    if (!version || !sha256) throw new DebianToolError(`apt-cache show ${name} gave no Version/SHA256 (is the package in apt's lists?)`);
    return { name, version, sha256 };
  });
}

/** The kernel release a linux-image-<release> package installs, e.g. "6.1.0-56-amd64". */
export function kernelRelease(kernelPackage: DebianPackage): string {
  return kernelPackage.name.replace(/^linux-image-/, '');
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** apt's own file name for a package (an epoch's ':' is written "%3a"). */
function debFileName(pkg: DebianPackage): string {
  return `${pkg.name}_${pkg.version.replace(/:/g, '%3a')}_amd64.deb`;
}

/**
 * Returns the path of the package's .deb in `cacheDir/debs`, downloading it with
 * `apt-get download` when missing or when the cached copy does not match the archive's
 * SHA256. Downloads go to a private directory first so concurrent builds never see half a file.
 */
export async function fetchDeb(pkg: DebianPackage, cacheDir: string, progress: (line: string) => void): Promise<string> {
  const debDir = join(cacheDir, 'debs');
  const path = join(debDir, debFileName(pkg));
  if (existsSync(path) && (await sha256File(path)) === pkg.sha256) return path;
  const staging = join(debDir, `.download-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true });
  try {
    progress(`downloading ${pkg.name}=${pkg.version}`);
    try {
      await run('apt-get', ['download', '-q', `${pkg.name}=${pkg.version}`], staging);
    } catch (error) {
      throw new DebianToolError(
        `could not download ${pkg.name}=${pkg.version} from the Debian archive (network down, or apt lists stale: run apt-get update): ${(error as Error).message}`,
      );
    }
    const downloaded = join(staging, debFileName(pkg));
    const actual = existsSync(downloaded) ? await sha256File(downloaded) : 'nothing';
    if (actual !== pkg.sha256) throw new DebianToolError(`${pkg.name}=${pkg.version}: downloaded ${actual}, archive lists ${pkg.sha256}`);
    await rename(downloaded, path);
    return path;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Unpacks a .deb with `dpkg -x` once into `cacheDir/unpacked/<file>/` and returns that directory. */
export async function unpackDeb(debPath: string, pkg: DebianPackage, cacheDir: string, progress: (line: string) => void): Promise<string> {
  const unpackedDir = join(cacheDir, 'unpacked');
  // Named after the .deb's hash, so a re-published package never reuses a stale tree.
  const dir = join(unpackedDir, `${pkg.name}_${pkg.sha256.slice(0, 16)}`);
  if (existsSync(dir)) return dir;
  const staging = join(unpackedDir, `.unpack-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true });
  try {
    progress(`unpacking ${pkg.name}=${pkg.version}`);
    await run('dpkg', ['-x', debPath, staging]);
    try {
      await rename(staging, dir);
    } catch (error) {
      // Another build unpacked the same package first; theirs is as good as ours.
      if (!existsSync(dir)) throw error;
    }
    return dir;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Every file under `dir`, as paths relative to it. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}
