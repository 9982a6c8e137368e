// Two appliances on one PostgreSQL database, A and B (B stands by for A), against a real
// PostgreSQL 15: only the owner of a node fires its steps; when A stops renewing its lease (its
// connection to PostgreSQL goes through a proxy the test holds still, as a frozen process or a
// partition would), B takes A's nodes over after the TTL with the next epoch and converges them;
// when A's connection comes back, its commits under the old epoch are refused (FencedError) and it
// acts on none of the nodes; `shoal appliances` and GET /api/v1/appliances show the leases. Then A as
// a process of its own, killed with SIGKILL: B takes its nodes over within the lease time.
import { writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { FencedError } from '../src/state/store.js';
import type { NodeId } from '../src/domain/node.js';
import type { ApplianceList } from '../src/api/views.js';
import { SimRack } from '../modules/sim/sim.js';
import { skipUnless } from './support/environment.js';
import { postgresRequirement, sql, startPostgres, type TestPostgres } from './support/postgres.js';
import { simSpecs } from './support/appliance.js';
import { runShoal } from './support/cli.js';
import { killAndWait, killChildAppliances, startChildAppliance } from './support/child-appliance.js';
import { bounded, useCleanups, waitFor as waitUntil } from './support/cleanups.js';

const skip = skipUnless('ownership on PostgreSQL', postgresRequirement());
const TTL_MS = 2_000;

let server: TestPostgres | undefined;
beforeAll(async () => {
  if (!skip) server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

const { cleanups, tempDir } = useCleanups('shoal-own-');
const waitFor = (check: () => boolean | Promise<boolean>, what: string, ms = 20_000) => waitUntil(check, what, ms);

/**
 * A TCP proxy on loopback to the server's unix socket that the test can hold still: while held,
 * bytes wait in both directions (nothing is lost or closed), as for a frozen process or a
 * partition that heals. Or cut: every connection through it is closed and new ones are refused
 * until it heals, as for a partition that resets connections.
 */
class HoldingProxy {
  private held = false;
  private cutOff = false;
  private readonly queued: [Socket, Buffer][] = [];
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly server: Server) {}

  static async start(socketPath: string): Promise<HoldingProxy> {
    const server = createServer();
    const proxy = new HoldingProxy(server);
    server.on('connection', (client) => {
      if (proxy.cutOff) return client.destroy();
      const upstream = createConnection(socketPath);
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        proxy.sockets.add(from);
        from.on('data', (data) => (proxy.held ? proxy.queued.push([to, data]) : to.write(data)));
        from.on('error', () => undefined);
        from.on('close', () => {
          proxy.sockets.delete(from);
          to.destroy();
        });
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    for (const [to, data] of this.queued.splice(0)) to.write(data);
  }

  cut(): void {
    this.cutOff = true;
    for (const socket of this.sockets) socket.destroy();
  }

  heal(): void {
    this.cutOff = false;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The steps each appliance's simulated rack was asked to take, per node. */
type Fired = Map<NodeId, string[]>;

/** An appliance in this process, on the sim with its steps counted, its log kept. */
  async function start(keyFile: string, name: string, storeUrl: string, powerMs: number, extra: { standbyFor?: string; networks: string[] }): Promise<{ appliance: Appliance; sim: SimRack; fired: Fired; log: string[] }> {
    const log: string[] = [];
    const config = loadConfig(undefined, {
      dataDir: tempDir(),
      api: { listen: '127.0.0.1', port: 0 },
      state: { backend: 'postgres', url: storeUrl },
      secrets: { keyFile },
      appliance: { name, leaseTtlMs: TTL_MS, ...extra },
      engine: { backoffBaseMs: 100, backoffMaxMs: 500 } as never,
    });
    const sim = new SimRack({ latencies: { probeMs: 10, powerMs, armMs: 10, bootStageMs: 20 } });
    const fired: Fired = new Map();
    for (const driver of sim.drivers) {
      for (const [step, handler] of Object.entries(driver.steps)) {
        driver.steps[step] = (request) => {
          fired.set(request.node.id, [...(fired.get(request.node.id) ?? []), step]);
          return handler!(request);
        };
      }
    }
    const sink = new Writable({
      write(chunk, _encoding, done) {
        log.push(String(chunk));
        done();
      },
    });
    const appliance = await Appliance.start(config, { modules: [sim], log: createLogger('info', sink) });
    cleanups.push(async () => {
      const problems = await appliance.stop();
      // A fenced appliance's last observations are refused: that is the point, not a problem.
      const unexpected = problems.filter((p) => !p.includes('fenced'));
      if (unexpected.length > 0) throw new Error(`appliance ${name} did not stop cleanly: ${unexpected.join('; ')}`);
    });
    return { appliance, sim, fired, log };
  }

/**
 * A and B on a new database, B standing by for A: A reaches PostgreSQL through a proxy the test
 * holds or cuts, B directly. B starts first: both run in this process, and an appliance's start
 * holds the event loop long enough (the facet graph's lint) to let a 2 s lease of the other run out
 * unrenewed.
 */
async function pairThroughProxy(powerMsOfA: number) {
  const url = await server!.createDatabase();
  const database = /^postgresql:\/\/[^/]*\/([^?]+)/.exec(url)![1]!;
  const keyFile = join(tempDir(), 'secret.key');
  const proxy = await HoldingProxy.start(join(server!.dir, '.s.PGSQL.5432'));
  cleanups.push(() => proxy.close());
  const b = await start(keyFile, 'b', url, 50, { standbyFor: 'a', networks: ['10.2.0.0/24'] });
  const a = await start(keyFile, 'a', `postgresql://shoal@127.0.0.1:${proxy.port}/${database}`, powerMsOfA, { networks: ['10.1.0.0/24'] });
  // Runs first: a failed test must not leave A's stop waiting on a held or cut proxy.
  cleanups.push(async () => {
    proxy.release();
    proxy.heal();
  });
  return { url, proxy, a, b };
}

describe.skipIf(skip)('two appliances on one PostgreSQL database, B standing by for A', () => {
  it('lets only the owner act, lets B take over A\'s nodes once A stops renewing, and fences A when it comes back', async () => {
    // A's BMCs are slow, so that A's steps are still under way when it goes still.
    const { url, proxy, a, b } = await pairThroughProxy(1_500);
    // The first appliance's first-start token is the cluster's admin.
    const token = b.appliance.token;

    // Four nodes enrolled through A without an address (A's), two with an address in B's network (B's).
    const specs = simSpecs(6).map((spec, i) => (i < 4 ? spec : { ...spec, ipv4: `10.2.0.${10 + i}` }));
    const nodes = await a.appliance.state.addNodes(specs.map((spec) => ({ spec })), 'test');
    const ofA = nodes.slice(0, 4).map((n) => n.id);
    const ofB = nodes.slice(4).map((n) => n.id);
    for (const n of nodes) await a.appliance.state.setDesired(n.id, { power: 'on' }, 'test');
    const poweredOn = (appliance: Appliance, ids: NodeId[], value: string) => ids.every((id) => appliance.state.observed(id).power?.value === value && appliance.engine.executor.status(id).phase === 'converged');
    await waitFor(() => poweredOn(a.appliance, ofA, 'on') && poweredOn(b.appliance, ofB, 'on'), 'every node on, each by its owner');

    // Only the owner fired steps, and each sees the same owners.
    expect(ofA.every((id) => a.appliance.ownership.owns(id) && !b.appliance.ownership.owns(id))).toBe(true);
    expect(ofB.every((id) => b.appliance.ownership.owns(id) && !a.appliance.ownership.owns(id))).toBe(true);
    expect(ofA.every((id) => a.fired.get(id)?.includes('power.on') && !b.fired.has(id))).toBe(true);
    expect(ofB.every((id) => b.fired.get(id)?.includes('power.on') && !a.fired.has(id))).toBe(true);

    const viewed = await fetch(`${b.appliance.url}/api/v1/appliances`, { headers: { authorization: `Bearer ${token}` } });
    expect(viewed.status).toBe(200);
    const before = (await viewed.json()) as ApplianceList;
    expect(before.self).toBe('b');
    expect(before.appliances.map((x) => [x.name, x.networks, x.standbyFor, x.lease?.holder, x.lease?.epoch, x.nodes])).toEqual([
      ['a', ['10.1.0.0/24'], null, 'a', 1, 4],
      ['b', ['10.2.0.0/24'], 'a', 'b', 1, 2],
    ]);

    // A powers its nodes off, and goes still while the steps are under way: its renewals, the steps'
    // observations and its other commits wait in the proxy.
    for (const id of ofA) await a.appliance.state.setDesired(id, { power: 'off' }, 'test');
    await waitFor(() => ofA.every((id) => a.appliance.engine.executor.status(id).step?.name === 'power.off'), "A's power.off steps under way");
    const frozenAt = performance.now();
    proxy.hold();
    // A renewal already past the proxy may still extend it: this is the earliest A's lease can expire.
    const leaseOfA = (await sql<{ expires_at: Date }>(url, "SELECT expires_at FROM leases WHERE appliance = 'a'"))[0]!.expires_at;
    const refused = a.appliance.state.setFrozen(ofA[0]!, true, 'test').then(
      () => undefined,
      (err: unknown) => err,
    );
    await waitFor(() => ofA.every((id) => !a.appliance.ownership.owns(id)), 'A to stop acting on its nodes once its lease ran out unrenewed', TTL_MS * 3);
    await waitFor(() => ofA.every((id) => b.appliance.ownership.owns(id)), "B to take over A's nodes", TTL_MS * 5);
    const takeoverMs = performance.now() - frozenAt;
    console.log(`B took over A's nodes ${Math.round(takeoverMs)} ms after A stopped renewing (lease TTL ${TTL_MS} ms, renewed every ${Math.floor(TTL_MS / 3)} ms)`);
    // Within the lease time and one heartbeat of B's.
    expect(takeoverMs).toBeLessThan(TTL_MS + TTL_MS / 3 + 1_000);
    const [lease] = await sql<{ holder: string; epoch: string }>(url, "SELECT holder, epoch FROM leases WHERE appliance = 'a'");
    expect(lease).toEqual({ holder: 'b', epoch: '2' });
    const takeover = (await b.appliance.state.events({ afterRev: 0, limit: 10_000 })).filter((e) => e.kind === 'appliance' && e.facet === 'lease/a').at(-1)!;
    expect([takeover.old, takeover.new, takeover.writer]).toEqual(['a#1', 'b#2', 'b']);
    // Not before the lease expired by the database's clock (the same host's clock as B's here).
    expect(takeover.at).toBeGreaterThanOrEqual(leaseOfA.getTime());

    // B converges A's nodes from their observed state (on: A's steps were never confirmed in the
    // log) to the wish (off), with steps of its own: A's were planned again, not taken as done.
    await waitFor(() => poweredOn(b.appliance, ofA, 'off'), "A's nodes off, by B", 20_000);
    expect(ofA.every((id) => b.fired.get(id)?.includes('power.off'))).toBe(true);
    const firedByA = new Map([...a.fired].map(([id, steps]) => [id, steps.length]));

    // A comes back with its old epoch: its commit is refused whole, it learns it is fenced, and acts on none of the nodes.
    proxy.release();
    const err = await bounded(refused, 15_000, "A's held commit to settle");
    expect(err).toBeInstanceOf(FencedError);
    expect((err as FencedError).message).toContain("a wrote with epoch 1 of the lease on a's nodes, but b holds it at epoch 2");
    await waitFor(() => a.log.some((line) => line.includes('FENCED: a lost the lease on a')), "A's log saying it is fenced");
    expect((await a.appliance.store.commit([{ nodeId: ofA[0]!, kind: 'observed', facet: 'power', old: 'off', value: 'on', writer: 'test' }], { fence: [{ name: 'a', holder: 'a', epoch: 1 }] }).catch((e: unknown) => e))).toBeInstanceOf(FencedError);
    const frozenInLog = (await b.appliance.state.events({ nodeId: ofA[0]!, limit: 10_000 })).filter((e) => e.kind === 'engine' && e.facet === 'frozen');
    expect(frozenInLog).toEqual([]);
    // A's own lease is B's now: A acts on none of A's nodes (B's own two stay B's).
    await waitFor(() => a.appliance.state.desired(ofA[0]!).power === 'off', "B's wish in A's memory through the feed");
    await new Promise((resolve) => setTimeout(resolve, TTL_MS));
    expect(nodes.every((n) => !a.appliance.ownership.owns(n.id))).toBe(true);
    expect(new Map([...a.fired].map(([id, steps]) => [id, steps.length]))).toEqual(firedByA);
    expect(a.appliance.engine.executor.phaseCounts()).toEqual({ converged: 0, converging: 0, failed: 0, frozen: 0, blocked: 0 });

    // The leases as operators see them.
    const cli = await runShoal(b.appliance, ['appliances'], 20_000, { SHOAL_TOKEN: token });
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    const rows = cli.stdout.trim().split('\n').map((line) => line.trim().split(/\s{2,}/));
    expect(rows[0]).toEqual(['APPLIANCE', 'NETWORKS', 'STANDBY FOR', 'LEASE HOLDER', 'EPOCH', 'EXPIRES IN', 'NODES']);
    expect(rows.slice(1).map((r) => [r[0], r[1], r[2], r[3], r[4], r[6]])).toEqual([
      ['a', '10.1.0.0/24', '-', 'b', '2', '4'],
      ['b *', '10.2.0.0/24', 'a', 'b', '1', '2'],
    ]);
    expect(rows.slice(1).every((r) => /^\d+\.\d s$/.test(r[5]!))).toBe(true);
  });

  it('fences A when a partition closes its connections: A refuses writes and stops acting at its lease end, B takes over, and what A kept meanwhile is refused once it heals', async () => {
    const { proxy, a, b } = await pairThroughProxy(50);
    const nodes = await a.appliance.state.addNodes(simSpecs(3, 'p').map((spec) => ({ spec })), 'test');
    const ids = nodes.map((n) => n.id);
    for (const id of ids) await a.appliance.state.setDesired(id, { power: 'on' }, 'test');
    const converged = (appliance: Appliance, power: string) => ids.every((id) => appliance.state.observed(id).power?.value === power && appliance.engine.executor.status(id).phase === 'converged');
    await waitFor(() => converged(a.appliance, 'on') && ids.every((id) => a.appliance.ownership.owns(id)), "A's nodes on, by A");

    proxy.cut();
    await waitFor(() => a.appliance.state.storeUnavailable !== undefined, 'A to see its store gone', 10_000);
    const write = await fetch(`${a.appliance.url}/api/v1/nodes/${nodes[0]!.name}/desired`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${b.appliance.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ power: 'off' }),
    });
    expect(write.status).toBe(503);
    expect(((await write.json()) as { title: string }).title).toBe('State store unavailable');
    // Seen by A while cut off: a node's power pulled, which A, its lease still running, may put back on.
    a.sim.inject(ids[0]!, { kind: 'power-off' });
    await waitFor(() => ids.every((id) => !a.appliance.ownership.owns(id)), 'A to stop acting once its lease ran out unrenewed', TTL_MS * 3);
    await waitFor(() => ids.every((id) => b.appliance.ownership.owns(id)), "B to take over A's nodes", TTL_MS * 5);
    const firedByA = new Map([...a.fired].map(([id, steps]) => [id, steps.length]));
    for (const id of ids) await b.appliance.state.setDesired(id, { power: 'off' }, 'test');
    await waitFor(() => converged(b.appliance, 'off'), "A's nodes off, by B");

    // Healed: A's kept observations go out under epoch 1 of a lease B holds at 2, and are refused whole.
    proxy.heal();
    await waitFor(() => a.log.some((line) => line.includes('FENCED: a lost the lease on a')), "A's log saying it is fenced", 20_000);
    await waitFor(() => a.appliance.state.storeUnavailable === undefined, 'A writing to its store again', 20_000);
    const pulled = (await b.appliance.state.events({ nodeId: ids[0]!, limit: 10_000 })).filter((e) => e.kind === 'observed' && e.facet === 'power').map((e) => e.new);
    // The log has A's power-on and B's power-off of it, never the pull A saw while cut off.
    expect(pulled).toEqual(['off', 'on', 'off']);
    expect(new Map([...a.fired].map(([id, steps]) => [id, steps.length]))).toEqual(firedByA);
    await waitFor(() => ids.every((id) => a.appliance.state.desired(id).power === 'off'), "B's wish in A's memory through the feed");
  });

  it("takes over the nodes of an appliance killed with SIGKILL within the lease time, and converges them", async () => {
    const url = await server!.createDatabase();
    const dir = tempDir();
    const keyFile = join(dir, 'secret.key');
    const b = await start(keyFile, 'b', url, 50, { standbyFor: 'a', networks: ['10.2.0.0/24'] });
    const token = b.appliance.token;
    const configPath = join(dir, 'a.yaml');
    writeFileSync(
      configPath,
      [
        `dataDir: ${join(dir, 'a')}`,
        'api: { listen: 127.0.0.1, port: 0, tls: off }',
        'log: { level: warn }',
        `state: { backend: postgres, url: ${JSON.stringify(url)} }`,
        `secrets: { keyFile: ${keyFile} }`,
        `appliance: { name: a, networks: [10.1.0.0/24], leaseTtlMs: ${TTL_MS} }`,
        'modules:',
        '  - name: sim',
        '    options: { latencies: { probeMs: 10, powerMs: 50, armMs: 10, bootStageMs: 20 } }',
        '',
      ].join('\n'),
    );
    const a = await startChildAppliance(configPath);
    cleanups.push(() => killChildAppliances());
    const onA = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${a.url}/api/v1${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
      return { status: res.status, body: (await res.json().catch(() => undefined)) as any };
    };
    await waitFor(async () => (await onA('GET', '/nodes')).status === 200, "B's admin token accepted by A");
    const ids: NodeId[] = [];
    for (const spec of simSpecs(4, 'k')) {
      const added = await onA('POST', '/nodes', { name: spec.name, macs: spec.macs, bmc: `sim://${spec.bmc.host}` });
      expect(added.status).toBe(201);
      ids.push(added.body.id as string);
      expect((await onA('PATCH', `/nodes/${spec.name}/desired`, { power: 'on' })).status).toBe(200);
    }
    // A powers them on: B sees it through the feed, and fires nothing for them.
    await waitFor(() => ids.every((id) => b.appliance.state.observed(id).power?.value === 'on'), "A's nodes on, as B sees them");
    expect(ids.some((id) => b.appliance.ownership.owns(id) || b.fired.has(id))).toBe(false);

    await killAndWait(a.child);
    const killedAt = performance.now();
    for (const id of ids) await b.appliance.state.setDesired(id, { power: 'off' }, 'test');
    await waitFor(() => ids.every((id) => b.appliance.ownership.owns(id)), "B to take over the killed A's nodes", TTL_MS * 5);
    const takeoverMs = performance.now() - killedAt;
    console.log(`B took over the nodes of A (SIGKILL) ${Math.round(takeoverMs)} ms after the kill (lease TTL ${TTL_MS} ms)`);
    expect(takeoverMs).toBeLessThan(TTL_MS + TTL_MS / 3 + 1_000);
    expect(await sql<{ holder: string; epoch: string }>(url, "SELECT holder, epoch FROM leases WHERE appliance = 'a'")).toEqual([{ holder: 'b', epoch: '2' }]);
    await waitFor(() => ids.every((id) => b.appliance.state.observed(id).power?.value === 'off' && b.appliance.engine.executor.status(id).phase === 'converged'), "A's nodes off, by B");
    expect(ids.every((id) => b.fired.get(id)?.includes('power.off'))).toBe(true);
  });
});
