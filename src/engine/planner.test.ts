import { describe, expect, it } from 'vitest';
import { FacetGraph } from './graph.js';
import { lintGraph } from './lint.js';
import { Planner } from './planner.js';
import type { FacetDefinition } from './facet.js';
import { standardFacets, bootFacet, imageFacet } from '../facets/standard.js';
import { DesiredVocabulary } from './desired.js';
import { diskFacet, writtenDetail } from '../facets/disk.js';
import { kexecFacet } from '../facets/kexec.js';
import type { DesiredState } from '../domain/state.js';

const graph = new FacetGraph(standardFacets);
const vocabulary = new DesiredVocabulary(standardFacets);
const standardTarget = (desired: DesiredState) => vocabulary.target(desired);
const planner = new Planner(graph);
const steps = (vector: string[], desired: DesiredState) => planner.plan(vector, standardTarget(desired)).steps.map((s) => s.step);

describe('planner on the standard facets', () => {
  it('takes an unknown node to ready on its image by the shortest path', () => {
    expect(steps(['unknown', 'unknown', 'unknown', 'unknown'], { image: 'compute@2' })).toEqual(['power.probe', 'boot.arm', 'power.on', 'run.boot']);
    expect(steps(['off', 'idle', 'off', 'unknown'], { image: 'compute@2' })).toEqual(['boot.arm', 'power.on', 'run.boot']);
  });

  it('reprovisions a ready node by drain, reboot and a network boot', () => {
    expect(steps(['on', 'kernel', 'ready', 'stale'], { image: 'compute@3' })).toEqual(['boot.arm', 'run.drain', 'run.reboot', 'run.boot']);
  });

  it('drains before powering off', () => {
    expect(steps(['on', 'kernel', 'ready', 'current'], { power: 'off' })).toEqual(['run.drain', 'power.off']);
  });

  it('treats unset facets as do not care', () => {
    expect(steps(['on', 'unknown', 'unknown', 'unknown'], { power: 'on' })).toEqual([]);
    expect(steps(['off', 'kernel', 'off', 'stale'], {})).toEqual([]);
    // boot=disk leaves the image alone: it only makes the next boot go to disk
    expect(steps(['on', 'kernel', 'ready', 'current'], { image: 'compute@3', boot: 'disk' })).toEqual(['boot.disk']);
  });

  it('is deterministic: the same inputs give the same plan, also from a freshly compiled graph', () => {
    const other = new Planner(new FacetGraph(standardFacets));
    for (const vector of graph.states) {
      const a = planner.plan(vector, standardTarget({ image: 'x@1' }));
      const b = other.plan(vector, standardTarget({ image: 'x@1' }));
      expect(b).toEqual(a);
    }
  });

  it('never returns a longer plan than breadth-first search allows (checked against an independent search)', () => {
    const target = standardTarget({ image: 'x@1' });
    for (let i = 0; i < graph.states.length; i++) {
      if (graph.settled[i] !== i) continue;
      // independent: iterative deepening over the same edges
      let best = -1;
      for (let depth = 0; depth <= 8 && best < 0; depth++) {
        const reach = (state: number, left: number): boolean => graph.matches(state, target) || (left > 0 && graph.edges[state]!.some((e) => reach(e.to, left - 1)));
        if (reach(i, depth)) best = depth;
      }
      const plan = planner.plan(graph.states[i]!, target);
      expect(plan.reachable).toBe(best >= 0);
      if (best >= 0) expect(plan.steps.length).toBe(best);
    }
  });

  it('recovers from every failure state: a reachable plan whose steps leave the failure value', () => {
    const targets: DesiredState[] = [{ image: 'x@1' }, { power: 'on' }, { power: 'off' }];
    standardFacets.forEach((facet, f) => {
      for (const failure of facet.failureValues) {
        for (const vector of graph.states) {
          if (vector[f] !== failure) continue;
          for (const desired of targets) {
            const plan = planner.plan(vector, standardTarget(desired));
            expect(plan.reachable, `${graph.describe(vector)} → ${JSON.stringify(desired)}`).toBe(true);
            const end = plan.steps.at(-1)?.expect ?? plan.from;
            const wanted = standardTarget(desired);
            for (const [name, allowed] of Object.entries(wanted)) expect(allowed).toContain(end[name]);
          }
        }
      }
    });
    // the specific recovery paths operators rely on
    expect(steps(['on', 'kernel', 'hung', 'current'], { image: 'x@1' })).toEqual(['power.off', 'boot.arm', 'power.on', 'run.boot']);
    expect(steps(['on', 'kernel', 'lost', 'current'], { image: 'x@1' })).toEqual(['power.off', 'boot.arm', 'power.on', 'run.boot']);
    expect(steps(['error', 'idle', 'off', 'unknown'], { power: 'on' })).toEqual(['power.probe', 'power.on']);
  });

  it('applies the machines\' reactions before planning (power off means nothing runs)', () => {
    expect(planner.settle(['off', 'kernel', 'ready', 'current'])).toEqual(['off', 'idle', 'off', 'current']);
    expect(planner.settle(['on', 'armed', 'off', 'unknown'])).toEqual(['on', 'armed', 'booting', 'unknown']);
  });
});

describe('facet abstraction', () => {
  it('sees a boot armed for another image as not armed, and the image against desired', () => {
    expect(bootFacet.abstract!({ value: 'armed', detail: 'compute@1', at: 0, source: 't' }, { image: 'compute@2' })).toBe('idle');
    expect(bootFacet.abstract!({ value: 'armed', detail: 'compute@2', at: 0, source: 't' }, { image: 'compute@2' })).toBe('armed');
    expect(imageFacet.abstract!({ value: 'compute@1', at: 0, source: 't' }, { image: 'compute@2' })).toBe('stale');
    expect(imageFacet.abstract!(undefined, { image: 'compute@2' })).toBe('unknown');
  });
});

describe('start-up lint', () => {
  it('passes the standard facets', () => {
    expect(lintGraph(graph, standardFacets).problems).toEqual([]);
  });

  it('reports an unreachable value, a dead end and a failure with no way back', () => {
    const broken: FacetDefinition = {
      name: 'firmware',
      values: ['unknown', 'current', 'flashing', 'bricked', 'orphan'],
      initial: 'unknown',
      failureValues: ['bricked'],
      observedOnly: [],
      steps: {
        'firmware.flash': { kind: 'action', confirms: ['current'], timeoutMs: 1000, failsTo: 'bricked', explain: 'flash' },
      },
      states: {
        unknown: { on: { 'firmware.flash': { target: 'current', guard: 'powerOn' } } },
        current: {},
        flashing: {},
        bricked: {},
        orphan: {},
      },
    };
    const facets = [...standardFacets, broken];
    const problems = lintGraph(new FacetGraph(facets), facets).problems;
    expect(problems).toContain('firmware=orphan is never reached');
    expect(problems).toContain('firmware=flashing is never reached');
    expect(problems.some((p) => p.startsWith('firmware=bricked has no recovery'))).toBe(true);
  });

  it('reports a state with no way out', () => {
    const stuck: FacetDefinition = {
      name: 'only',
      values: ['a', 'b'],
      initial: 'a',
      failureValues: [],
      observedOnly: [],
      steps: { 'only.go': { kind: 'action', confirms: ['b'], timeoutMs: 1, failsTo: 'a', explain: 'go' } },
      states: { a: { on: { 'only.go': 'b' } }, b: {} },
    };
    const problems = lintGraph(new FacetGraph([stuck]), [stuck]).problems;
    expect(problems).toEqual(['state only=b has no way out']);
  });
});

describe('planner with the disk facet (install to disk)', () => {
  const facets = [...standardFacets, diskFacet];
  const diskGraph = new FacetGraph(facets);
  const diskVocabulary = new DesiredVocabulary(facets);
  const diskPlanner = new Planner(diskGraph);
  // power, boot, run, image, disk
  const plan = (vector: string[], desired: DesiredState) => diskPlanner.plan(vector, diskVocabulary.target(desired)).steps.map((s) => s.step);

  it('passes the lint', () => {
    expect(lintGraph(diskGraph, facets).problems).toEqual([]);
  });

  it('installs boot=disk image=X by a deploy boot, a verified write and a boot from the disk', () => {
    const install = ['boot.deploy', 'power.on', 'run.boot', 'disk.write', 'boot.disk', 'run.drain', 'run.reboot', 'run.boot'];
    expect(plan(['off', 'idle', 'off', 'unknown', 'unknown'], { image: 'debian@12', boot: 'disk' })).toEqual(install);
    // a node running another image from its disk is installed the same way, once drained and rebooted
    expect(plan(['on', 'disk', 'ready', 'stale', 'other'], { image: 'debian@12', boot: 'disk' })).toEqual(['boot.deploy', 'run.drain', 'run.reboot', ...install.slice(2)]);
    // the deploy environment's kernel was served: what is left is its hello, then the write
    expect(plan(['on', 'deployed', 'booting', 'unknown', 'unknown'], { image: 'debian@12', boot: 'disk' })).toEqual(install.slice(2));
    // a failed write is tried again from the running deploy environment
    expect(plan(['on', 'deployed', 'ready', 'stale', 'failed'], { image: 'debian@12', boot: 'disk' })).toEqual(install.slice(3));
  });

  it('leaves a node alone whose disk holds the desired image and runs it', () => {
    expect(plan(['on', 'disk', 'ready', 'current', 'written'], { image: 'debian@12', boot: 'disk' })).toEqual([]);
    // written but not yet booted from: only the disk boot is left
    expect(plan(['on', 'deployed', 'ready', 'stale', 'written'], { image: 'debian@12', boot: 'disk' })).toEqual(['boot.disk', 'run.drain', 'run.reboot', 'run.boot']);
  });

  it('never counts the deploy environment, nor a disk it did not write, as the desired image', () => {
    const end = (vector: string[], desired: DesiredState) => {
      const p = diskPlanner.plan(vector, diskVocabulary.target(desired));
      return p.steps.at(-1)?.expect ?? p.from;
    };
    expect(end(['off', 'idle', 'off', 'unknown', 'unknown'], { image: 'debian@12', boot: 'disk' })).toMatchObject({ boot: 'disk', run: 'ready', image: 'current', disk: 'written' });
    // no plan may reach image=current with boot=disk before the disk was written
    const p = diskPlanner.plan(['off', 'idle', 'off', 'unknown', 'unknown'], diskVocabulary.target({ image: 'debian@12', boot: 'disk' }));
    const writeAt = p.steps.findIndex((s) => s.step === 'disk.write');
    expect(writeAt).toBeGreaterThan(0);
    expect(p.steps.slice(0, writeAt).every((s) => s.expect.image !== 'current')).toBe(true);
  });

  it('erases a disk from the deploy environment, and refuses disk=erased with boot=disk', () => {
    expect(plan(['off', 'idle', 'off', 'unknown', 'written'], { disk: 'erased' })).toEqual(['boot.deploy', 'power.on', 'run.boot', 'disk.erase']);
    expect(() => diskVocabulary.parsePatch({ disk: 'erased', boot: 'disk' })).toThrow(/disk=erased contradicts boot=disk/);
  });

  it('sees a disk written with another image as other', () => {
    const written = { value: 'written', detail: writtenDetail('debian@11', 'a'.repeat(64), 'vda'), at: 0, source: 't' };
    expect(diskFacet.abstract!(written, { image: 'debian@12', boot: 'disk' })).toBe('other');
    expect(diskFacet.abstract!(written, { image: 'debian@11', boot: 'disk' })).toBe('written');
    expect(diskFacet.abstract!(undefined, {})).toBe('unknown');
  });
});

describe('planner with the kexec facet (reprovision without firmware)', () => {
  const facets = [...standardFacets, diskFacet, kexecFacet];
  const kexecGraph = new FacetGraph(facets);
  const kexecVocabulary = new DesiredVocabulary(facets);
  const kexecPlanner = new Planner(kexecGraph);
  // power, boot, run, image, disk, kexec
  const plan = (vector: string[], desired: DesiredState) => kexecPlanner.plan(vector, kexecVocabulary.target(desired)).steps.map((s) => s.step);

  it('passes the lint', () => {
    expect(lintGraph(kexecGraph, facets).problems).toEqual([]);
  });

  it('prefers run.kexec to run.reboot while the running OS can kexec, and reboots when it cannot', () => {
    expect(plan(['on', 'kernel', 'ready', 'stale', 'unknown', 'available'], { image: 'compute@3' })).toEqual(['boot.arm', 'run.drain', 'run.kexec']);
    expect(plan(['on', 'kernel', 'ready', 'stale', 'unknown', 'unavailable'], { image: 'compute@3' })).toEqual(['boot.arm', 'run.drain', 'run.reboot', 'run.boot']);
    // a kexec'd boot counts as the boot of what was served: the next change kexecs again
    expect(plan(['on', 'kexec', 'ready', 'stale', 'unknown', 'available'], { image: 'compute@4' })).toEqual(['boot.arm', 'run.drain', 'run.kexec']);
    expect(plan(['on', 'kexec', 'ready', 'current', 'unknown', 'available'], { image: 'compute@3', boot: 'network' })).toEqual([]);
    // a kexec'd boot still on its way after an appliance restart: only its hello is awaited
    expect(plan(['on', 'kexec', 'booting', 'stale', 'unknown', 'available'], { image: 'compute@3' })).toEqual(['run.boot']);
  });

  it('ends a kexec on the desired image, running, without touching power', () => {
    const p = kexecPlanner.plan(['on', 'kernel', 'ready', 'stale', 'unknown', 'available'], kexecVocabulary.target({ image: 'compute@3' }));
    expect(p.steps.at(-1)!.expect).toMatchObject({ power: 'on', boot: 'kexec', run: 'ready', image: 'current' });
    expect(p.steps.every((s) => s.expect.power === 'on')).toBe(true);
  });

  it("falls back to the power cycle and a network boot when the kexec'd kernel never said hello (run.kexec failed to hung)", () => {
    expect(plan(['on', 'kexec', 'hung', 'stale', 'unknown', 'available'], { image: 'compute@3' })).toEqual(['power.off', 'boot.arm', 'power.on', 'run.boot']);
  });

  it('never kexecs into the deploy environment or a disk: those boots go through the firmware', () => {
    expect(plan(['on', 'disk', 'ready', 'stale', 'other', 'available'], { image: 'debian@12', boot: 'disk' })).toEqual(['boot.deploy', 'run.drain', 'run.reboot', 'run.boot', 'disk.write', 'boot.disk', 'run.drain', 'run.reboot', 'run.boot']);
  });
});
