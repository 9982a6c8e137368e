// A PostgreSQL restart under a running appliance (issue 16): while the server is down the appliance
// serves reads from memory, refuses operator writes with a 503 problem that changes nothing, and
// keeps what its modules observe; once the server is back it commits what it kept, in order, and
// takes writes again, with no restart of its own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { SimRack } from '../modules/sim/sim.js';
import { skipUnless } from './support/environment.js';
import { postgresRequirement, sql, startPostgres, type TestPostgres } from './support/postgres.js';
import { simSpecs, until } from './support/appliance.js';

const skip = skipUnless('an appliance across a PostgreSQL restart', postgresRequirement());

let server: TestPostgres | undefined;
let dataDir: string | undefined;
beforeAll(async () => {
  if (!skip) server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe.skipIf(skip)('an appliance whose PostgreSQL restarts', () => {
  it('serves reads from memory and refuses writes with a 503 while the server is down, keeps what it observed, and resumes when it is back', async () => {
    const url = await server!.createDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'shoal-pg-restart-'));
    const sim = new SimRack({ latencies: { probeMs: 20, powerMs: 20, bootStageMs: 20 } });
    const config = loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 }, state: { backend: 'postgres', url } });
    const appliance = await Appliance.start(config, { modules: [sim], log: createLogger('silent') });
    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${appliance.url}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${appliance.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: await res.json() };
    };
    try {
      const nodes = await appliance.state.addNodes(simSpecs(3).map((spec) => ({ spec, bmcPassword: 'pw' })), 'test');
      for (const n of nodes) await appliance.state.setDesired(n.id, { power: 'on' }, 'test');
      await until(appliance, () => appliance.engine.executor.phaseCounts().converged === 3, 20_000, 'three converged nodes');
      const [pulled, asked] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
      // Frozen, the engine takes no step for it: what is observed of it while the server is down stays in view.
      await appliance.state.setFrozen(pulled.id, true, 'test');

      await server!.shutdown();
      await until(appliance, () => appliance.state.storeUnavailable !== undefined, 20_000, 'the appliance to see its store gone');
      const read = await api('GET', '/nodes');
      expect(read.status).toBe(200);
      expect(read.body.nodes.map((n: { name: string }) => n.name)).toEqual(nodes.map((n) => n.name));
      const refused = await api('PATCH', `/nodes/${asked.name}/desired`, { power: 'off' });
      expect(refused.status).toBe(503);
      expect(refused.body.title).toBe('State store unavailable');
      expect(refused.body.detail).toMatch(/^the PostgreSQL database .* cannot be reached: .*\. This PATCH was refused and changed nothing/);
      expect(appliance.state.desired(asked.id).power).toBe('on');
      // Observed meanwhile: the power pulled behind the appliance's back.
      sim.inject(pulled.id, { kind: 'power-off' });
      await until(appliance, () => appliance.state.observed(pulled.id).power?.value === 'off', 5_000, 'the pulled power seen');

      await server!.start();
      await until(appliance, () => appliance.state.storeUnavailable === undefined, 30_000, 'the store writable again');
      const accepted = await api('PATCH', `/nodes/${asked.name}/desired`, { power: 'off' });
      expect(accepted.status).toBe(200);
      await appliance.state.setFrozen(pulled.id, false, 'test');
      const settled = () => appliance.engine.executor.phaseCounts().converged === 3 && appliance.state.observed(asked.id).power?.value === 'off' && appliance.state.observed(pulled.id).power?.value === 'on';
      await until(appliance, settled, 30_000, 'the pulled node powered on again and the asked one off');
      await appliance.state.flush();
      // The log holds what memory saw while the server was down (the pulled power), then the engine's power-on.
      const powers = await sql<{ new: string; writer: string }>(url, "SELECT new, writer FROM events WHERE node_id = $1 AND kind = 'observed' AND facet = 'power' ORDER BY rev", [pulled.id]);
      expect(powers.map((p) => p.new).slice(-2)).toEqual(['off', 'on']);
      // Memory and log end at the same revision: nothing it kept was dropped.
      const [last] = await sql<{ rev: string }>(url, 'SELECT max(rev) AS rev FROM events');
      expect(Number(last!.rev)).toBe(appliance.state.revision);
    } finally {
      await appliance.stop();
    }
  });
});
