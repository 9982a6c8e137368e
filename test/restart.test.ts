// The appliance killed with SIGKILL in the middle of provisioning, then started again on the same
// data directory: nothing written is lost and every node converges.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { killAndWait, killChildAppliances, startChildAppliance, writeSimApplianceConfig } from './support/child-appliance.js';

let dataDir: string | undefined;

afterEach(async () => {
  await killChildAppliances();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('restart after SIGKILL', () => {
  it('loses nothing and converges every node', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-restart-'));
    const configPath = writeSimApplianceConfig(dataDir, 200);
    const first = await startChildAppliance(configPath);
    const token = readFileSync(join(dataDir, 'data', 'api-token'), 'utf8').trim();
    const call = async (url: string, method: string, path: string, body?: string) => {
      const res = await fetch(`${url}/api/v1${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' }, ...(body ? { body } : {}) });
      return res.json() as Promise<any>;
    };
    const inventory = ['nodes:', ...Array.from({ length: 20 }, (_, i) => `  - { name: k${i}, macs: ["52:54:00:bb:00:${i.toString(16).padStart(2, '0')}"], bmc: "sim://k${i}", desired: { power: "on", image: "compute@1" } }`), ''].join('\n');
    expect((await call(first.url, 'POST', '/inventory', inventory)).imported).toBe(20);

    // Kill it once provisioning is under way but not finished.
    for (;;) {
      const { counts } = await call(first.url, 'GET', '/nodes');
      const events = (await call(first.url, 'GET', '/events?after=0&limit=10000')).events as { facet: string; new: string }[];
      if (events.some((e) => e.facet === 'power' && e.new === 'on')) {
        expect(counts.converged).toBeLessThan(20);
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const before = (await call(first.url, 'GET', '/events?after=0&limit=10000')).events as { rev: number }[];
    await killAndWait(first.child);

    const second = await startChildAppliance(configPath);
    const afterRestart = (await call(second.url, 'GET', '/events?after=0&limit=10000')).events as { rev: number }[];
    // Everything acknowledged before the kill is still there, in the same order.
    expect(afterRestart.slice(0, before.length).map((e) => e.rev)).toEqual(before.map((e) => e.rev));
    const deadline = Date.now() + 60_000;
    let view: any;
    for (;;) {
      view = await call(second.url, 'GET', '/nodes');
      if (view.counts.converged === 20 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const behind = view.nodes
      .filter((n: any) => n.phase !== 'converged')
      .map((n: any) => `${n.name} ${n.phase} ${JSON.stringify(n.observed)} step=${JSON.stringify(n.step)} ${n.reason ?? ''}`);
    expect(behind, 'nodes not converged 60 s after the restart').toEqual([]);
    expect(view.counts).toMatchObject({ converged: 20, failed: 0 });
    for (const n of view.nodes) {
      expect(n.desired).toEqual({ power: 'on', image: 'compute@1' });
      expect(n.observed.image.value).toBe('compute@1');
    }
    const all = (await call(second.url, 'GET', '/events?after=0&limit=10000')).events as { rev: number }[];
    expect(all.map((e) => e.rev)).toEqual([...all.map((e) => e.rev)].sort((a, b) => a - b));
  }, 120_000);
});
