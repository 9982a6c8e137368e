// A root tree as the squashfs the Shoal initramfs mounts read-only (squashfs-tools' mksquashfs).
// Reproducible: mksquashfs sorts directory entries and numbers inodes in that order, and every
// file's time and the filesystem's own are set to SOURCE_DATE_EPOCH, so the same tree always gives
// the same bytes. Owners and xattrs (file capabilities) are kept as the packages installed them.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** zstd: Debian's kernel reads it (CONFIG_SQUASHFS_ZSTD), it packs nearly as tight as xz, and unpacks several times faster on a node. */
export const SQUASHFS_COMPRESSION = 'zstd';

export class SquashfsError extends Error {}

export interface SquashfsOptions {
  /** Every file owned by root: for a tree unpacked without root, whose owners are the unpacking user. */
  allRoot?: boolean;
}

export function mksquashfsArgs(tree: string, out: string, sourceDateEpoch: number, options: SquashfsOptions = {}): string[] {
  const time = String(sourceDateEpoch);
  return [tree, out, '-noappend', '-comp', SQUASHFS_COMPRESSION, '-mkfs-time', time, '-all-time', time, '-no-progress', '-quiet', ...(options.allRoot ? ['-all-root'] : [])];
}

/** Writes `tree` as a squashfs at `out`; mksquashfs's complaints become the error. */
export function writeSquashfs(tree: string, out: string, sourceDateEpoch: number, options: SquashfsOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('mksquashfs', mksquashfsArgs(tree, out, sourceDateEpoch, options), { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
    createInterface({ input: child.stderr }).on('line', (l) => lines.push(l));
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(new SquashfsError(error.code === 'ENOENT' ? 'mksquashfs is not installed (apt-get install squashfs-tools)' : `mksquashfs: ${error.message}`)),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new SquashfsError(`mksquashfs ${tree} failed (exit status ${code}): ${lines.slice(-5).join(' | ')}`));
    });
  });
}
