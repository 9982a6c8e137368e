// Converges 10,000 simulated nodes with zero simulated latency, from unknown to ready on an image,
// and compares the engine's event-log write rate with a raw better-sqlite3 insert loop measured
// in the same run. Run: npm run bench [-- --nodes N]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { ClusterState } from '../src/state/cluster-state.js';
import { SqliteStore } from '../src/state/sqlite-store.js';
import { Engine } from '../src/engine/engine.js';
import { DesiredVocabulary } from '../src/engine/desired.js';
import { standardFacets } from '../src/facets/standard.js';
import { ServiceRegistry } from '../src/contracts/services.js';
import { createLogger } from '../src/log.js';
import { SimRack, ZERO_LATENCY } from '../modules/sim/sim.js';
import type { NodeSpec } from '../src/domain/node.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '10000' } } });
const count = Number(values.nodes);
const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-'));

try {
  const store = new SqliteStore(join(dir, 'shoal.db'), { keyFile: join(dir, 'secret.key') });
  // Rates are taken on CPU time as well as wall time: on a busy machine, wall time inside a commit
  // measures the scheduler as much as the code.
  let commitMs = 0;
  let commitCpuMs = 0;
  let committed = 0;
  let commits = 0;
  const commit = store.commit.bind(store);
  store.commit = async (changes) => {
    // SQLite's commit runs synchronously inside the call; timing the call alone (not the await)
    // keeps other promise continuations that run before ours out of the measurement.
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const pending = commit(changes);
    const c = process.cpuUsage(c0);
    commitMs += performance.now() - t0;
    commitCpuMs += (c.user + c.system) / 1000;
    const events = await pending;
    committed += events.length;
    commits++;
    return events;
  };
  const desired = new DesiredVocabulary(standardFacets);
  const state = await ClusterState.open(store, { checkDesired: desired.check });
  const sim = new SimRack({ latencies: ZERO_LATENCY });
  const engine = new Engine(state, { definitions: standardFacets, desired }, [sim], { limits: { 'power.on': count } }, createLogger('warn'));
  sim.start({
    nodes: () => state.list(),
    node: (id) => state.node(id),
    byMac: (mac) => state.byMac(mac),
    desired: (id) => state.desired(id),
    observed: (id) => state.observed(id),
    bmcPassword: () => undefined,
    observe: (id, facet, value, detail) => state.observe(id, facet, value, 'sim', detail),
    onNodeChange: () => () => undefined,
    log: createLogger('warn'),
    dataDir: dir,
    http: undefined as never,
    api: undefined as never,
    services: new ServiceRegistry(),
    metrics: engine.metrics.registry,
  });

  const specs: NodeSpec[] = Array.from({ length: count }, (_, i) => ({
    name: `n${i}`,
    macs: [`02:00:00:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`],
    bmc: { scheme: 'sim', host: `bmc${i}` },
    arch: 'x86_64',
    firmware: 'auto',
    labels: {},
  }));
  const nodes = await state.addNodes(specs.map((spec) => ({ spec })), 'bench');
  engine.executor.start();
  await new Promise((r) => setImmediate(r));
  commitMs = 0;
  commitCpuMs = 0;
  committed = 0;
  commits = 0;

  console.log(`converging ${count} simulated nodes (zero latency) from unknown to power=on image=compute@1 …`);
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(nodes.map((n) => state.setDesired(n.id, { power: 'on', image: 'compute@1' }, 'bench')));
  let lastReport = started;
  await new Promise<void>((resolve) => {
    const check = () => {
      const counts = engine.executor.phaseCounts();
      const now = performance.now();
      if (now - lastReport > 2000) {
        console.log(`  ${((now - started) / 1000).toFixed(1)} s: ${counts.converged} converged, ${counts.converging} converging`);
        lastReport = now;
      }
      if (counts.converged === count) resolve();
      else setTimeout(check, 20);
    };
    check();
  });
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpu0);
  await state.flush();
  const plans = (await engine.metrics.plans.get()).values[0]?.value ?? 0;
  const engineRate = committed / (commitMs / 1000);
  const engineCpuRate = committed / (commitCpuMs / 1000);
  engine.executor.stop();
  await store.close();

  // The peer: a raw insert loop of the same number of rows into the same schema, one prepared
  // statement in one transaction (the fastest way better-sqlite3 writes).
  const raw = new Database(join(dir, 'raw.db'));
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.exec(
    'CREATE TABLE events (rev INTEGER PRIMARY KEY, at INTEGER NOT NULL, node_id TEXT, kind TEXT NOT NULL, facet TEXT NOT NULL, old TEXT, new TEXT, detail TEXT, writer TEXT NOT NULL); CREATE INDEX events_by_fact ON events (node_id, kind, facet, rev);',
  );
  const insert = raw.prepare('INSERT INTO events (at, node_id, kind, facet, old, new, detail, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  raw.transaction(() => {
    for (let i = 0; i < committed; i++) insert.run(Date.now(), nodes[i % count]!.id, 'observed', 'power', 'off', 'on', null, 'sim');
  })();
  const rawCpu = process.cpuUsage(c0);
  const rawRate = committed / ((performance.now() - t0) / 1000);
  const rawCpuRate = committed / ((rawCpu.user + rawCpu.system) / 1e6);
  raw.close();

  const rssMb = process.resourceUsage().maxRSS / 1024;
  const ratio = engineCpuRate / rawCpuRate;
  console.log('');
  console.log(`nodes converged        ${count}`);
  console.log(`wall time              ${(wallMs / 1000).toFixed(2)} s   (goal < 30 s)`);
  console.log(`cpu time               ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s`);
  console.log(`plans                  ${plans} (${Math.round(plans / (wallMs / 1000))} plans/s)`);
  console.log(`commits                ${commits} (${Math.round(committed / commits)} events each on average)`);
  console.log(`events written         ${committed} (${Math.round(committed / (wallMs / 1000))} events/s over the run)`);
  console.log(`peak RSS               ${rssMb.toFixed(0)} MB   (goal < 1024 MB)`);
  console.log(`event-log write rate   ${Math.round(engineCpuRate)} events per CPU-second inside the engine's commits (${Math.round(engineRate)}/s wall)`);
  console.log(`raw insert loop        ${Math.round(rawCpuRate)} rows per CPU-second (${Math.round(rawRate)}/s wall; better-sqlite3, same schema, one transaction)`);
  console.log(`ratio engine / raw     ${ratio.toFixed(2)}× on CPU time, ${(engineRate / rawRate).toFixed(2)}× on wall time   (goal ≥ 0.5×)`);
  const ok = wallMs < 30_000 && rssMb < 1024 && ratio >= 0.5;
  console.log(ok ? 'all goals met' : 'GOALS NOT MET');
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
