// The disk facet: what a node's local disk holds, for installs to disk. The module whose agent
// writes disks declares it (modules/agent). Its steps run in the deploy environment, the RAM image
// a `boot.deploy` network boot starts, whose agent streams an image onto the device the node's
// root-device hint picks and checks its sha256, or erases the disk. `written` is relative to the
// desired image: a disk written with another image is `other`, so desiring `boot=disk image=X`
// (the image facet asks for disk=written then) plans deploy boot → write → disk boot, and a node
// whose disk already holds X is left alone.
import { and, stateIn } from 'xstate';
import { defineFacet, type Target } from '../engine/facet.js';

const SECOND = 1000;

/** A `written` observation's detail: the image ref and the sha256 of the raw bytes on the disk, then what the agent adds. */
export function writtenDetail(imageRef: string, rawSha256: string, device: string): string {
  return `${imageRef} sha256:${rawSha256} on ${device}`;
}

/** The image ref a `written` detail names, or undefined. */
export function writtenImage(detail: string | undefined): string | undefined {
  return detail?.split(' ', 1)[0] || undefined;
}

const DISK_VALUES = ['unknown', 'other', 'writing', 'written', 'erasing', 'erased', 'failed'] as const;

export const diskFacet = defineFacet({
  name: 'disk',
  values: DISK_VALUES,
  initial: 'unknown',
  failureValues: ['failed'],
  observedOnly: ['other', 'writing', 'erasing'],
  guards: {
    // The deploy environment's agent is up: its network boot was served and it said hello.
    deployRunning: and([stateIn({ run: 'ready' }), stateIn({ boot: 'deployed' })]),
  },
  steps: {
    'disk.write': { kind: 'action', confirms: ['written'], progress: ['writing'], timeoutMs: 3600 * SECOND, failsTo: 'failed', explain: 'stream the desired image onto the disk the root-device hint picks, decompressing on the way, and check the sha256 of what was written' },
    'disk.erase': { kind: 'action', confirms: ['erased'], progress: ['erasing'], timeoutMs: 4 * 3600 * SECOND, failsTo: 'failed', explain: 'wipe the partition tables and filesystem signatures of the disk the root-device hint picks (the whole disk with erase=full)' },
  },
  states: Object.fromEntries(
    // From every value, a write or an erase (a write under way may be restarted after an appliance restart).
    DISK_VALUES.map((value) => [
      value,
      {
        on: {
          ...(value === 'written' ? {} : { 'disk.write': { target: 'written', guard: 'deployRunning' } }),
          ...(value === 'erased' ? {} : { 'disk.erase': { target: 'erased', guard: 'deployRunning' } }),
        },
      },
    ]),
  ),
  abstract(observation, desired) {
    if (!observation) return 'unknown';
    if (observation.value === 'written') return desired.image && writtenImage(observation.detail) !== desired.image ? 'other' : 'written';
    return observation.value as 'unknown';
  },
  desired: {
    accepts: ['erased'],
    target: (): Target => ({ disk: ['erased'] }),
    conflict: (_, desired) => (desired.boot === 'disk' ? 'disk=erased contradicts boot=disk: an erased disk boots nothing' : undefined),
  },
});
