// A facet declared by a module, not by Shoal: an operator desires it through the API, the CLI and
// the inventory file like a standard one, the planner reaches it through the module's own steps, and
// a driver that lacks a handler for one of those steps stops the appliance at start-up.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateIn } from 'xstate';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { defineFacet } from '../src/engine/facet.js';
import type { ModuleHost, ShoalModule, StepHandler } from '../src/engine/module.js';
import { runShoal } from './support/cli.js';
import { startTestAppliance, until, type TestAppliance } from './support/appliance.js';

/** A chassis locator lamp: only switched while the node has power. */
const lampFacet = defineFacet({
  name: 'lamp',
  values: ['unknown', 'off', 'on'],
  initial: 'unknown',
  failureValues: ['unknown'],
  observedOnly: [],
  guards: { lampPowered: stateIn({ power: 'on' }) },
  steps: {
    'lamp.light': { kind: 'action', confirms: ['on'], timeoutMs: 5_000, failsTo: 'unknown', explain: 'light the locator lamp' },
    'lamp.douse': { kind: 'action', confirms: ['off'], timeoutMs: 5_000, failsTo: 'unknown', explain: 'put the locator lamp out' },
  },
  states: {
    unknown: { on: { 'lamp.light': { target: 'on', guard: 'lampPowered' }, 'lamp.douse': { target: 'off', guard: 'lampPowered' } } },
    off: { on: { 'lamp.light': { target: 'on', guard: 'lampPowered' } } },
    on: { on: { 'lamp.douse': { target: 'off', guard: 'lampPowered' } } },
  },
  desired: { accepts: ['on', 'off'], target: (value) => ({ lamp: [value] }) },
});

class LampModule implements ShoalModule {
  readonly name = 'lamp';
  readonly facets = [lampFacet];
  readonly drivers;
  readonly switched: string[] = [];
  private host: ModuleHost | undefined;

  constructor(handlers: Partial<Record<'lamp.light' | 'lamp.douse', StepHandler>> = { 'lamp.light': (r) => this.set(r.node.id, 'on'), 'lamp.douse': (r) => this.set(r.node.id, 'off') }) {
    this.drivers = [{ facet: 'lamp', claims: () => true, steps: handlers }];
  }

  start(host: ModuleHost): void {
    this.host = host;
  }

  private async set(id: string, value: 'on' | 'off'): Promise<void> {
    this.switched.push(`${id}:${value}`);
    setTimeout(() => this.host!.observe(id, 'lamp', value), 10);
  }
}

const FAST = { probeMs: 10, powerMs: 30, armMs: 10, bootStageMs: 20, drainMs: 10, lostAfterMs: 1_000 };

describe('a facet declared by a module', () => {
  let t: TestAppliance;
  let lamp: LampModule;
  let dir: string;
  const converged = (name: string) => () => {
    const node = t.appliance.state.resolve(name);
    return t.appliance.engine.executor.status(node.id).phase === 'converged';
  };

  beforeAll(async () => {
    lamp = new LampModule();
    t = await startTestAppliance({ sim: { latencies: FAST }, modules: [lamp] });
    dir = mkdtempSync(join(tmpdir(), 'shoal-lamp-'));
    for (const name of ['l1', 'l2']) {
      const res = await t.api('POST', '/api/v1/nodes', { name, macs: [`52:54:00:1a:00:0${name.at(-1)}`], bmc: `sim://${name}` });
      expect(res.status).toBe(201);
    }
  });
  afterAll(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is desired through the API, planned through its own steps after power, and converged', async () => {
    const res = await t.api('PATCH', '/api/v1/nodes/l1/desired', { power: 'on', lamp: 'on' });
    expect(res.status).toBe(200);
    const plan = await t.api('GET', '/api/v1/nodes/l1/plan');
    expect(plan.body.target).toMatchObject({ power: ['on'], lamp: ['on'] });
    const steps = (plan.body.steps as { step: string }[]).map((s) => s.step);
    expect(steps.indexOf('lamp.light')).toBeGreaterThan(steps.indexOf('power.on'));
    await until(t.appliance, converged('l1'), 20_000, 'l1 converged with its lamp on');
    expect(t.appliance.state.observed(t.appliance.state.resolve('l1').id).lamp?.value).toBe('on');
  });

  it('refuses a value the facet does not accept, and a facet no one declares, naming what is allowed', async () => {
    const bad = await t.api('PATCH', '/api/v1/nodes/l1/desired', { lamp: 'blue' });
    expect(bad.status).toBe(400);
    expect(bad.body.detail).toContain('lamp is one of on, off');
    const unknown = await t.api('PATCH', '/api/v1/nodes/l1/desired', { colour: 'red' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.detail).toMatch(/colour: not a facet that can be desired; these can: power, boot, run, image, disk, lamp/);
    expect(t.appliance.state.desired(t.appliance.state.resolve('l1').id)).toEqual({ power: 'on', lamp: 'on' });
  });

  it('is desired through the CLI', async () => {
    const set = await runShoal(t.appliance, ['node', 'set', 'l1', 'lamp=off', '--wait', '--timeout', '20'], 30_000);
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    expect(t.appliance.state.observed(t.appliance.state.resolve('l1').id).lamp?.value).toBe('off');
    const bad = await runShoal(t.appliance, ['node', 'set', 'l1', 'lamp=dim'], 30_000);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('lamp is one of on, off');
  });

  it('is desired through the inventory file, all rows or none', async () => {
    const good = join(dir, 'rack.yaml');
    writeFileSync(good, 'nodes:\n  - name: l3\n    macs: ["52:54:00:1a:00:03"]\n    bmc: sim://l3\n    desired: { power: on, lamp: on }\n');
    const imported = await runShoal(t.appliance, ['import', good], 30_000);
    expect(imported.code).toBe(0);
    await until(t.appliance, converged('l3'), 20_000, 'l3 converged with its lamp on');
    expect(t.appliance.state.observed(t.appliance.state.resolve('l3').id).lamp?.value).toBe('on');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'nodes:\n  - name: l4\n    macs: ["52:54:00:1a:00:04"]\n    bmc: sim://l4\n    desired: { lamp: flashing }\n');
    const refused = await runShoal(t.appliance, ['import', bad], 30_000);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('lamp is one of on, off');
    expect(t.appliance.state.list().map((n) => n.name)).not.toContain('l4');
  });
});

describe('the start-up lint', () => {
  it('refuses a driver without a handler for an action step of its facet, naming the step', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'shoal-lamp-lint-'));
    try {
      const config = loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 } });
      const incomplete = new LampModule({ 'lamp.light': async () => {} });
      await expect(Appliance.start(config, { modules: [incomplete], log: createLogger('silent') })).rejects.toThrow(
        'module lamp: its lamp driver has no handler for step lamp.douse',
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('stopping the appliance', () => {
  it('leaves no listener on the cluster state or the executor', async () => {
    const t = await startTestAppliance({ sim: { latencies: FAST }, modules: [new LampModule()] });
    const { state, engine } = t.appliance;
    const counts = () => ({ node: state.listenerCount('node'), appliance: state.listenerCount('appliance'), events: state.listenerCount('events'), phase: engine.executor.listenerCount('phase') });
    expect(counts().phase).toBeGreaterThan(0);
    expect(counts().node).toBeGreaterThan(0);
    await t.close();
    expect(counts()).toEqual({ node: 0, appliance: 0, events: 0, phase: 0 });
  });
});
