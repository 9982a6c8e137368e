// The config facet: whether a node runs the effective configuration it should (its profiles and
// overrides, src/state/profiles.ts). The boot module that serves the configuration observes it,
// `current` or `stale` with the digest the node booted with as detail, and re-observes it whenever
// a profile or the node changes. Like an image, a configuration is changed by booting again, so
// the facet has no steps of its own: a network boot to ready makes it current, and an operator who
// desires `config=current` (on a node, or by a rollout over a selector with maxUnavailable) gets
// the same drain, reboot and boot as an image change.
import { defineFacet, type Target } from '../engine/facet.js';

export const configFacet = defineFacet({
  name: 'config',
  values: ['current', 'stale'],
  initial: 'current',
  failureValues: [],
  observedOnly: ['stale'],
  steps: {},
  // networkBootDone is the image facet's guard (guard names are global across facets).
  states: { stale: { on: { 'run.boot': { guard: 'networkBootDone', target: 'current' } } } },
  abstract(observation) {
    // A node whose boots this appliance never served (a disk boot, a simulated node) has nothing to be stale against.
    return observation?.value === 'stale' ? 'stale' : 'current';
  },
  desired: {
    accepts: ['current'],
    // Like an image: a network boot to ready, unless the node is to be off or boot from disk.
    target: (_, desired): Target => (desired.power !== 'off' && desired.boot !== 'disk' ? { config: ['current'], run: ['ready'] } : {}),
  },
});
