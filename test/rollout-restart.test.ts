// A rollout with the appliance killed (SIGKILL) half way: started again on the same data directory,
// the rollout is still there, with its nodes' progress, and goes on to the end within its budget.
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

async function waitFor<T>(read: () => Promise<T>, ok: (value: T) => boolean, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(value).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('rollout across a restart after SIGKILL', () => {
  it('keeps its progress and goes on to the end, never more than maxUnavailable under way', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-rollout-restart-'));
    const configPath = writeSimApplianceConfig(dataDir, 150);
    const first = await startChildAppliance(configPath);
    const token = readFileSync(join(dataDir, 'data', 'api-token'), 'utf8').trim();
    const call = async (url: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(`${url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': typeof body === 'string' ? 'application/yaml' : 'application/json' },
        ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const inventory = [
      'nodes:',
      ...Array.from({ length: 12 }, (_, i) => `  - { name: w${String(i).padStart(2, '0')}, macs: ["52:54:00:cc:00:${i.toString(16).padStart(2, '0')}"], bmc: "sim://w${i}", labels: { role: compute }, desired: { power: "on", image: "compute@1" } }`),
      '',
    ].join('\n');
    expect((await call(first.url, 'POST', '/inventory', inventory)).status).toBe(201);
    await waitFor(() => call(first.url, 'GET', '/nodes'), (r) => r.body.counts.converged === 12, 90_000, 'twelve nodes on compute@1');

    const started = await call(first.url, 'POST', '/rollouts', { selector: 'role=compute', desired: { image: 'compute@2' }, maxUnavailable: 3 });
    expect(started.status).toBe(201);
    const id = started.body.id as string;
    // Killed once the first nodes are done, with others under way.
    const before = await waitFor(() => call(first.url, 'GET', `/rollouts/${id}`), (r) => r.body.counts.done >= 3, 90_000, 'three nodes done');
    await killAndWait(first.child);
    expect(before.body.counts.done).toBeLessThan(12);

    const second = await startChildAppliance(configPath);
    const events = async () => (await call(second.url, 'GET', '/events?after=0&limit=10000')).body.events as { rev: number; kind: string; nodeId: string | null; facet: string; old: string | null; new: string; writer: string }[];
    const restartRev = (await events()).at(-1)!.rev;
    const after = await call(second.url, 'GET', `/rollouts/${id}`);
    expect(after.body.status).toBe('running');
    expect(after.body.counts.total).toBe(12);
    // What was acknowledged before the kill is still there (a record written in the last few
    // milliseconds may be re-derived from the node's state instead).
    expect(after.body.counts.done + after.body.counts['in-progress']).toBeGreaterThanOrEqual(before.body.counts.done);

    const done = await waitFor(() => call(second.url, 'GET', `/rollouts/${id}`), (r) => r.body.status !== 'running', 120_000, 'the rollout to finish');
    expect(done.body).toMatchObject({ status: 'done', counts: { done: 12, total: 12 } });
    const nodes = (await call(second.url, 'GET', '/nodes')).body;
    expect(nodes.counts).toMatchObject({ converged: 12 });
    for (const n of nodes.nodes) {
      expect(n.desired).toEqual({ power: 'on', image: 'compute@2' });
      expect(n.observed.image.value).toBe('compute@2');
    }

    // The rollout went on after the restart: nodes were started by it then. Across both lives,
    // its records never had more than 3 nodes between in-progress and done.
    const log = (await events()).filter((e) => e.kind === 'rollout' && e.facet === id);
    expect(log.some((e) => e.rev > restartRev && e.new === 'in-progress')).toBe(true);
    let underWay = 0;
    let peak = 0;
    for (const e of log.filter((e) => e.nodeId !== null)) {
      if (e.new === 'in-progress') underWay++;
      if (e.old === 'in-progress') underWay--;
      peak = Math.max(peak, underWay);
    }
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(3);

    // Ids go on from the store: the next rollout is not a second ro-1.
    const next = await call(second.url, 'POST', '/rollouts', { selector: 'role=compute', desired: { power: 'on' }, maxUnavailable: '50%' });
    expect(next.status).toBe(201);
    expect(next.body.id).not.toBe(id);
    expect(next.body.limit).toBe(6);
  }, 300_000);
});
