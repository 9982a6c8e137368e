// Disk jobs: the disk facet's steps as the deploy environment's agent carries them out
// (PROTOCOL.md, "Disk jobs"). A job is decided here, before anything is sent: the disk picked by
// the node's root-device hint among the disks its agent reported, the image's disk artifact, the
// size check. It then travels as the action of every reply (`action=write-disk` and its `disk.…`
// lines) until a heartbeat reports it ended; what the heartbeats say becomes the disk observation.
import { randomBytes } from 'node:crypto';
import { HardwareSchema, type Hardware } from '../../src/contracts/hardware.js';
import type { ImageInfo } from '../../src/contracts/services.js';
import { pickRootDevice, type RootDeviceHint } from '../../src/domain/root-device.js';
import { writtenDetail } from '../../src/facets/disk.js';
import type { DiskJobState, StatusReport } from './protocol.js';

const MIB = 1024 * 1024;

export interface DiskJob {
  id: string;
  kind: 'write' | 'erase';
  device: string;
  deviceBytes: number;
  /** The image a write puts on the disk, with the one-time bootstrap its first boot from disk says hello with. */
  write?: { image: ImageInfo; bootstrap: string };
  erase?: 'quick' | 'full';
}

/** The hardware the node's agent last reported (the observed hardware facet's detail), or undefined. */
export function reportedHardware(detail: string | undefined): Hardware | undefined {
  if (!detail) return undefined;
  try {
    const parsed = HardwareSchema.safeParse(JSON.parse(detail));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function device(hardware: Hardware | undefined, hint: RootDeviceHint | undefined, neededBytes: number) {
  if (!hardware) throw new Error('the deploy environment has not reported its hardware yet, so no disk can be picked');
  const disk = pickRootDevice(hardware.disks, hint, neededBytes);
  if (disk instanceof Error) throw disk;
  return disk;
}

/** A write of `image` to the disk `hint` picks; throws with the reason an operator reads when it cannot start. */
export function writeJob(hardware: Hardware | undefined, hint: RootDeviceHint | undefined, image: ImageInfo | undefined, imageRef: string | undefined, issueBootstrap: () => string): DiskJob {
  if (!imageRef) throw new Error('no desired image to write: set image=NAME@VERSION with boot=disk');
  if (!image) throw new Error(`image ${imageRef} is not in the image store`);
  if (!image.disk) throw new Error(`image ${imageRef} has no disk image to write (build one: npx tsx images/build-disk.ts --image DIR ${imageRef})`);
  const disk = device(hardware, hint, image.disk.rawSize);
  return { id: newJobId(), kind: 'write', device: disk.name, deviceBytes: disk.sizeBytes, write: { image, bootstrap: issueBootstrap() } };
}

export function eraseJob(hardware: Hardware | undefined, hint: RootDeviceHint | undefined, mode: 'quick' | 'full'): DiskJob {
  const disk = device(hardware, hint, 0);
  return { id: newJobId(), kind: 'erase', device: disk.name, deviceBytes: disk.sizeBytes, erase: mode };
}

function newJobId(): string {
  return randomBytes(9).toString('base64url');
}

/** The reply lines of a job: `applianceUrl` is the URL the deploy agent reached us by, which the installed OS uses too. */
export function jobLines(job: DiskJob, applianceUrl: string, nodeId: string): string[] {
  const common = [`disk.job=${job.id}`, `disk.device=${job.device}`, `disk.deviceBytes=${job.deviceBytes}`];
  if (job.erase) return [...common, `disk.mode=${job.erase}`];
  const { image, bootstrap } = job.write!;
  const disk = image.disk!;
  return [
    ...common,
    `disk.path=${disk.path}`,
    `disk.format=${disk.format}`,
    `disk.bytes=${disk.rawSize}`,
    `disk.sha256=${disk.rawSha256}`,
    ...(disk.bootEnv ? [`disk.envOffset=${disk.bootEnv.offset}`, `disk.bootArgs=shoal.url=${applianceUrl} shoal.node=${nodeId} shoal.token=${bootstrap} shoal.image=${image.ref}`] : []),
  ];
}

/**
 * The observation of a job just decided, before the agent reports on it: under way, at 0 %. A job
 * the agent fails at once then still changes the observation, so a retry that fails as the last
 * attempt did fails its step at once too, instead of waiting out the step's deadline.
 */
export function diskJobQueued(job: DiskJob): { value: DiskJobState; detail: string } {
  return { value: job.kind === 'write' ? 'writing' : 'erasing', detail: progressDetail(job, 0) };
}

/** `412 of 1283 MiB on sda (32 %)`. */
function progressDetail(job: DiskJob, done: number): string {
  const total = job.write ? job.write.image.disk!.rawSize : job.deviceBytes;
  return `${Math.floor(done / MIB)} of ${Math.ceil(total / MIB)} MiB on ${job.device} (${Math.min(100, Math.floor((100 * done) / total))} %)`;
}

/** What a report about `job` makes the disk facet, or undefined when it says nothing of it. */
export function diskObservation(job: DiskJob, report: StatusReport): { value: DiskJobState; detail: string; ended: boolean } | undefined {
  if (report.disk === undefined || report.diskJob !== job.id) return undefined;
  switch (report.disk) {
    case 'writing':
    case 'erasing':
      return { value: report.disk, detail: progressDetail(job, report.diskBytes ?? 0), ended: false };
    case 'written': {
      const { image } = job.write ?? {};
      if (!image) return { value: 'failed', detail: `the agent reported a write for erase job ${job.id}`, ended: true };
      const want = image.disk!.rawSha256;
      if (report.diskSha256 !== want) return { value: 'failed', detail: `checksum mismatch: the agent read back sha256 ${report.diskSha256 ?? 'nothing'} from ${job.device}, ${image.ref}'s disk is ${want}`, ended: true };
      return { value: 'written', detail: writtenDetail(image.ref, want, job.device), ended: true };
    }
    case 'erased':
      return job.erase ? { value: 'erased', detail: `${job.device} (${job.erase})`, ended: true } : { value: 'failed', detail: `the agent reported an erase for write job ${job.id}`, ended: true };
    case 'failed':
      return { value: 'failed', detail: `${job.kind} of ${job.device} failed: ${report.diskError ?? 'no reason given'}`, ended: true };
  }
}
