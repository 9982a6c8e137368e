// A recipe's root tree, built by Debian's mmdebstrap and cached: `<cacheDir>/debian/trees/<key>/`,
// where the key covers the recipe (its fields and added files), SOURCE_DATE_EPOCH and this file's
// own text (the hooks below decide the tree as much as the recipe does). Downloaded .debs are kept
// in `<cacheDir>/debian/archives/` (mmdebstrap's documented sync-in/sync-out hooks), so a rebuild
// after a recipe change downloads only what is new. mmdebstrap's stages are reported as progress;
// when it fails, the error names the packages and the mirror's answer.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { createInterface } from 'node:readline';
import type { OsRecipe } from './os-recipe.js';

/** mmdebstrap or the mirror failed; the message says what and why. */
export class RootTreeError extends Error {}

export interface RootTree {
  dir: string;
  /** The tree cache key (hex). */
  key: string;
}

const BUILDER_TEXT_SHA256 = createHash('sha256').update(readFileSync(new URL(import.meta.url))).digest('hex');

export function treeKey(recipe: OsRecipe, sourceDateEpoch: number): string {
  return createHash('sha256').update(`${recipe.key}\n${sourceDateEpoch}\n${BUILDER_TEXT_SHA256}\n`).digest('hex');
}

/** /etc/shoal-image: what the agent reports as bakedImage (images/agent/PROTOCOL.md). */
function shoalImageFile(recipe: OsRecipe): string {
  return [`image=${recipe.name}@${recipe.version}`, `name=${recipe.name}`, `version=${recipe.version}`, `description=${recipe.description}`, ''].join('\n');
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** mmdebstrap's arguments; `inputs` holds the files to upload, written by the caller. */
function mmdebstrapArgs(recipe: OsRecipe, target: string, archives: string, inputs: string): string[] {
  const uploads = [
    ...recipe.files.map((f, i) => ({ path: f.path, mode: f.mode, local: join(inputs, `file-${i}`) })),
    { path: '/etc/shoal-image', mode: 0o644, local: join(inputs, 'shoal-image') },
  ];
  const customize: string[] = [];
  for (const u of uploads) {
    customize.push(`mkdir -p "$1"${quote(posix.dirname(u.path))}`, `upload ${u.local} ${u.path}`, `chmod ${u.mode.toString(8)} "$1"${quote(u.path)}`);
  }
  if (recipe.postInstall.trim() !== '') {
    customize.push(`upload ${join(inputs, 'post-install')} /tmp/shoal-post-install`, 'chroot "$1" /bin/sh -e /tmp/shoal-post-install', 'rm -f "$1"/tmp/shoal-post-install');
  }
  // The Shoal initramfs boots the image; Debian's own (made by initramfs-tools) would only take space.
  customize.push('rm -f "$1"/boot/initrd.img-*');
  // Caches that record the build host's run, not the image (mmdebstrap already empties apt's).
  customize.push('rm -f "$1"/var/cache/ldconfig/aux-cache "$1"/var/log/*.log "$1"/var/log/apt/*');
  customize.push(`sync-out /var/cache/apt/archives ${archives}`);
  return [
    `--variant=${recipe.variant}`,
    `--components=${recipe.components.join(',')}`,
    '--aptopt=APT::Install-Recommends "false"',
    `--include=${recipe.packages.join(',')}`,
    // Keep the downloaded .debs until sync-out has copied them to the cache.
    '--skip=download/empty',
    '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
    `--setup-hook=sync-in ${archives} /var/cache/apt/archives`,
    ...customize.map((hook) => `--customize-hook=${hook}`),
    recipe.suite,
    target,
    recipe.mirror,
  ];
}

/** Turns mmdebstrap's and apt's error lines into one message naming the packages and the mirror's answer. */
export function describeFailure(recipe: OsRecipe, errorLines: readonly string[], exit: string): string {
  const problems: string[] = [];
  for (const line of errorLines) {
    const missing = /Unable to locate package (\S+)/.exec(line) ?? /Package '?([^' ]+)'? has no installation candidate/.exec(line);
    const fetch = /Failed to fetch (\S+)\s+(.*)$/.exec(line);
    if (missing) problems.push(`package ${missing[1]} is not in ${recipe.suite} (${recipe.components.join(', ')}) at ${recipe.mirror}`);
    else if (fetch) {
      const deb = /\/([^/_]+)_[^/]+\.deb$/.exec(fetch[1]!);
      problems.push(`${deb ? `package ${deb[1]}` : 'the package lists'} could not be downloaded: ${fetch[1]} answered ${fetch[2]!.trim()}`);
    }
  }
  const detail = problems.length > 0 ? problems.join('; ') : errorLines.slice(-5).join(' | ') || 'no error message';
  return `mmdebstrap could not build ${recipe.name}@${recipe.version} from ${recipe.mirror} ${recipe.suite} (${exit}): ${detail}`;
}

function runMmdebstrap(args: string[], sourceDateEpoch: number, recipe: OsRecipe, progress: (line: string) => void): Promise<void> {
  const ref = `${recipe.name}@${recipe.version}`;
  return new Promise((resolve, reject) => {
    const child = spawn('mmdebstrap', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SOURCE_DATE_EPOCH: String(sourceDateEpoch), LC_ALL: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' },
    });
    const errorLines: string[] = [];
    const onLine = (line: string) => {
      // "I: downloading packages with apt...": mmdebstrap's stages are the progress an operator sees.
      if (line.startsWith('I: ')) progress(`${ref}: mmdebstrap: ${line.slice(3)}`);
      else if (/^(E|W): |^Err:|^Error: |Failed to fetch/.test(line.trim())) {
        errorLines.push(line.trim());
        progress(`${ref}: mmdebstrap: ${line.trim()}`);
      }
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(new RootTreeError(error.code === 'ENOENT' ? 'mmdebstrap is not installed (apt-get install mmdebstrap)' : `mmdebstrap: ${error.message}`)),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new RootTreeError(describeFailure(recipe, errorLines, signal ? `killed by ${signal}` : `exit status ${code}`)));
    });
  });
}

/** The recipe's root tree, from the cache or built now. Needs root: the tree keeps its packages' owners. */
export async function ensureRootTree(recipe: OsRecipe, cacheDir: string, sourceDateEpoch: number, progress: (line: string) => void): Promise<RootTree> {
  if (/\s/.test(cacheDir)) throw new RootTreeError(`the image cache directory ${JSON.stringify(cacheDir)} has whitespace in it, which mmdebstrap's hooks cannot take`);
  const key = treeKey(recipe, sourceDateEpoch);
  const trees = join(cacheDir, 'debian', 'trees');
  const dir = join(trees, key);
  const ref = `${recipe.name}@${recipe.version}`;
  if (existsSync(join(dir, 'etc', 'shoal-image'))) {
    progress(`${ref}: root tree ${key.slice(0, 12)} from the cache`);
    return { dir, key };
  }
  if (process.getuid?.() !== 0) throw new RootTreeError(`building ${ref}'s root tree needs root (the tree keeps each package's file owners)`);
  const archives = join(cacheDir, 'debian', 'archives');
  const staging = join(trees, `.build-${process.pid}-${randomBytes(4).toString('hex')}`);
  const inputs = `${staging}.inputs`;
  await mkdir(archives, { recursive: true });
  await mkdir(inputs, { recursive: true });
  try {
    for (const [i, f] of recipe.files.entries()) await writeFile(join(inputs, `file-${i}`), f.data);
    await writeFile(join(inputs, 'shoal-image'), shoalImageFile(recipe));
    await writeFile(join(inputs, 'post-install'), recipe.postInstall);
    progress(`${ref}: building the root tree with mmdebstrap (${recipe.suite} from ${recipe.mirror}, ${recipe.packages.length} packages and their dependencies)`);
    const started = performance.now();
    await runMmdebstrap(mmdebstrapArgs(recipe, staging, archives, inputs), sourceDateEpoch, recipe, progress);
    try {
      await rename(staging, dir);
    } catch (error) {
      // A concurrent build of the same key finished first; its tree is as good as ours.
      if (!existsSync(dir)) throw error;
    }
    progress(`${ref}: root tree built in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    return { dir, key };
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(inputs, { recursive: true, force: true });
  }
}
