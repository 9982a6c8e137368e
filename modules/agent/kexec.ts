// Reprovision by kexec (run.kexec, src/facets/kexec.ts): what a running agent is asked to load and
// execute, what it says of it, and the record of kexecs that never said hello. A node whose kexec
// failed twice is marked: the kexec facet stays unavailable for it, so the planner reboots it
// through the firmware, until an operator clears the mark. The marks are kept in the module's data
// directory, so an appliance restart does not make a failing node try again.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { KexecBoot } from '../../src/contracts/services.js';
import { KEXEC_FAILURES_MARKED, kexecForbiddenDetail } from '../../src/facets/kexec.js';
import type { NodeId } from '../../src/domain/node.js';
import type { KexecSupport } from './protocol.js';

/** A kexec the agent is asked for: one job id, started once by the agent, carried by every reply until it reports. */
export interface KexecJob {
  id: string;
  boot: KexecBoot;
}

let jobCounter = 0;
export function kexecJob(boot: KexecBoot): KexecJob {
  return { id: `kexec-${Date.now().toString(36)}-${(jobCounter++).toString(36)}`, boot };
}

/** The `kexec.*` lines of a reply (images/agent/PROTOCOL.md, "kexec"). */
export function kexecLines(job: KexecJob): string[] {
  const { kernel, initrd, cmdline } = job.boot;
  return [`kexec.job=${job.id}`, `kexec.kernel=${kernel.path}`, `kexec.kernelSha256=${kernel.sha256}`, `kexec.initrd=${initrd.path}`, `kexec.initrdSha256=${initrd.sha256}`, `kexec.cmdline=${cmdline}`];
}

const SUPPORT_REASON: Record<Exclude<KexecSupport, 'ready'>, string> = {
  'no-tool': 'the running OS has no kexec command (kexec-tools)',
  disabled: 'the running kernel forbids loading a kernel (kernel.kexec_load_disabled = 1)',
  unsupported: 'the running kernel cannot kexec (no /sys/kernel/kexec_loaded)',
};

const FailuresSchema = z.record(z.string(), z.object({ count: z.number().int().min(0), last: z.string().max(300) }));
type Failures = z.infer<typeof FailuresSchema>;

/** The kexec facet's observation for a node, from what its agent reports, its configuration and its failures. */
export function kexecObservation(
  support: KexecSupport | undefined,
  config: { allowed: boolean; setBy?: string } | undefined,
  failures: { count: number; last: string } | undefined,
): { value: 'available' | 'unavailable'; detail?: string } {
  if (config && !config.allowed) return { value: 'unavailable', detail: kexecForbiddenDetail(config.setBy) };
  if (failures && failures.count >= KEXEC_FAILURES_MARKED) {
    return { value: 'unavailable', detail: `kexec failed ${failures.count} times (last: ${failures.last}); reprovisions reboot through the firmware until the mark is cleared (shoal node kexec-clear NODE)` };
  }
  if (support === undefined) return { value: 'unavailable', detail: 'the agent does not report kexec support (an agent from before it: rebuild the image)' };
  if (support !== 'ready') return { value: 'unavailable', detail: SUPPORT_REASON[support] };
  return failures?.count ? { value: 'available', detail: `${failures.count} failed kexec (last: ${failures.last})` } : { value: 'available' };
}

/** Failed kexecs per node, on disk as one small JSON file rewritten whole (renamed into place). */
export class KexecFailures {
  private readonly path: string;
  private failures: Failures = {};

  constructor(dataDir: string) {
    this.path = join(dataDir, 'kexec-failures.json');
    try {
      this.failures = FailuresSchema.parse(JSON.parse(readFileSync(this.path, 'utf8')));
    } catch {
      // first start, or unreadable: no marks (a failing node fails twice again before it is marked)
    }
  }

  of(id: NodeId): { count: number; last: string } | undefined {
    return this.failures[id];
  }

  failed(id: NodeId, reason: string): void {
    this.failures[id] = { count: (this.failures[id]?.count ?? 0) + 1, last: reason.slice(0, 300) };
    this.save();
  }

  /** A kexec that said hello, or an operator's clear: the node starts afresh. */
  clear(id: NodeId): boolean {
    if (!this.failures[id]) return false;
    delete this.failures[id];
    this.save();
    return true;
  }

  private save(): void {
    writeFileSync(`${this.path}.tmp`, JSON.stringify(this.failures));
    renameSync(`${this.path}.tmp`, this.path);
  }
}
