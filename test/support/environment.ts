// What a test needs from the machine, and a printed reason when it is missing.
// Tests that need root, /dev/net/tun, QEMU or a Debian tool skip with that reason;
// CI installs everything (scripts/install-deps.sh), so there they run for real.
import { accessSync, constants } from 'node:fs';
import { execFileSync } from 'node:child_process';

export interface Requirement {
  ok: boolean;
  reason: string;
}

export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Checks every named requirement; `reason` lists all that are missing. */
export function requirements(opts: { root?: boolean; tun?: boolean; commands?: string[] }): Requirement {
  const missing: string[] = [];
  if (opts.root && process.getuid?.() !== 0) missing.push('root (network namespaces need it)');
  if (opts.tun) {
    try {
      accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
    } catch {
      missing.push('read-write /dev/net/tun');
    }
  }
  for (const command of opts.commands ?? []) {
    if (!hasCommand(command)) missing.push(`command ${command}`);
  }
  return missing.length === 0
    ? { ok: true, reason: '' }
    : { ok: false, reason: `missing ${missing.join(', ')}; run scripts/install-deps.sh as root` };
}

/** Prints why a suite is skipped, so a skip is never silent. Returns true when the suite must skip. */
export function skipUnless(suite: string, requirement: Requirement): boolean {
  if (!requirement.ok) console.warn(`[skip] ${suite}: ${requirement.reason}`);
  return !requirement.ok;
}
