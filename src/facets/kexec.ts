// The kexec facet: whether the OS a node runs now can start the node's next boot itself, by loading
// the armed boot's kernel and initrd and kexec'ing into them, so a reprovision skips the firmware's
// power-on self-test and the whole PXE chain. The module whose agents report it declares it
// (modules/agent, and modules/sim for simulated agents); the run facet's `run.kexec` step is taken
// only while it is `available`. It is observed, never desired: the detail says why it is not
// available (the running OS has no kexec, the node's profile forbids it, or it failed twice).
import { stateIn } from 'xstate';
import { defineFacet } from '../engine/facet.js';

export const KEXEC_FACET = 'kexec';

/** Failed kexecs after which a module reports the facet unavailable, so the planner stops choosing kexec for the node. */
export const KEXEC_FAILURES_MARKED = 2;

/** The facet's detail when a node's settings forbid kexec: who forbade it, in the setting's own words. */
export function kexecForbiddenDetail(setBy: string | undefined): string {
  return `forbidden by ${setBy ?? 'the node'} (kexec: false)`;
}

export const kexecFacet = defineFacet({
  name: KEXEC_FACET,
  values: ['unavailable', 'available'],
  initial: 'unavailable',
  failureValues: [],
  observedOnly: ['available'],
  guards: {
    kexecAvailable: stateIn({ kexec: 'available' }),
  },
  steps: {},
  states: {},
  abstract: (observation) => (observation?.value === 'available' ? 'available' : 'unavailable'),
});
