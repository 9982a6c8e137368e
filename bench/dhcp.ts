// DHCP benchmark: DORA exchanges per second of our server against Kea, both measured in
// the same run with the same client, at each rate back to back.
//
//   npx tsx bench/dhcp.ts [--seconds N] [--rates 1000,2000,...] [--repeats N]
//
// Two network namespaces joined by a veth pair; the server in one, `perfdhcp` in the other
// (it acts as a relay, so replies go unicast to its giaddr). Every run starts its server
// afresh with an empty lease store, and the simulated clients (-R) stay well inside the
// pool, so the pool never runs dry. Needs root, perfdhcp (kea-admin) and kea-dhcp4.
// dnsmasq is not compared: it answers perfdhcp's relayed DISCOVERs (it logs the OFFER) but
// the OFFER never reaches the wire of the veth, so perfdhcp counts every exchange lost.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Netns } from '../test/support/netns.js';
import { requirements } from '../test/support/environment.js';

const ROOT = join(import.meta.dirname, '..');
const SERVER_IF = 'bdhs0';
const CLIENT_IF = 'bdhc0';
const SERVER_IP = '10.99.0.1';
const CLIENT_IP = '10.99.0.2';
const POOL = { start: '10.99.1.0', end: '10.99.100.255' }; // 25,600 addresses
const CLIENTS = 10_000;
/** A rate counts as sustained when at most this share of exchanges is lost. */
const MAX_DROP_RATIO = 0.01;
/** Past this loss a server is saturated and higher rates only measure its queue. */
const GIVE_UP_DROP_RATIO = 0.2;

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rates: { type: 'string', default: '1000,1500,2000,2500,3000,4000,6000,8000,12000' },
    repeats: { type: 'string', default: '2' },
  },
});
const repeats = Number(args.repeats);
const seconds = Number(args.seconds);
const rates = args.rates.split(',').map(Number);
if (
  !Number.isInteger(seconds) || seconds < 1 || seconds > 60 ||
  !Number.isInteger(repeats) || repeats < 1 || repeats > 5 ||
  rates.some((r) => !Number.isInteger(r) || r < 1)
) {
  console.error('usage: npx tsx bench/dhcp.ts [--seconds 1..60] [--rates R1,R2,...] [--repeats 1..5]');
  process.exit(2);
}

interface Measurement {
  rate: number;
  /** Completed DISCOVER-OFFER-REQUEST-ACK exchanges per second, as perfdhcp counted them. */
  doraPerSecond: number;
  dropRatio: number;
  /** CPU time (user + system) the server's processes spent per completed exchange. */
  cpuMicrosPerDora: number;
}

interface ServerUnderTest {
  name: string;
  /** Starts the server with an empty lease store; resolves once it is bound. */
  start(ns: Netns, dir: string): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitForUdp67(ns: Netns, child: ChildProcess, name: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    if (/:67\b/.test(ns.run('ss', ['-H', '-uln']))) {
      await sleep(300); // Kea binds its UDP socket before its packet socket
      return;
    }
    await sleep(100);
  }
  throw new Error(`${name} did not bind port 67 within 30 s`);
}

const ours: ServerUnderTest = {
  name: 'shoal',
  async start(ns, dir) {
    const spec = {
      config: {
        mode: 'full',
        interface: { name: SERVER_IF, address: SERVER_IP },
        subnets: [{ cidr: '10.99.0.0/16', router: SERVER_IP, pool: POOL }],
        leaseSeconds: 3600,
      },
      leaseDb: join(dir, 'shoal-leases.db'),
    };
    writeFileSync(join(dir, 'shoal.json'), JSON.stringify(spec));
    const child = ns.spawn('npx', ['tsx', join(ROOT, 'test/support/dhcp-serve.ts'), join(dir, 'shoal.json')], { cwd: ROOT, stdio: 'ignore' });
    await waitForUdp67(ns, child, 'shoal');
  },
};

const kea: ServerUnderTest = {
  name: 'kea',
  async start(ns, dir) {
    const config = {
      Dhcp4: {
        'interfaces-config': { interfaces: [SERVER_IF], 'dhcp-socket-type': 'raw' },
        'lease-database': { type: 'memfile', persist: true, name: join(dir, 'kea-leases4.csv'), 'lfc-interval': 0 },
        'valid-lifetime': 3600,
        subnet4: [{ id: 1, subnet: '10.99.0.0/16', pools: [{ pool: `${POOL.start} - ${POOL.end}` }], 'option-data': [{ name: 'routers', data: SERVER_IP }] }],
        loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stderr' }], severity: 'WARN' }],
      },
    };
    writeFileSync(join(dir, 'kea.json'), JSON.stringify(config));
    mkdirSync('/run/kea', { recursive: true });
    const child = ns.spawn('kea-dhcp4', ['-c', join(dir, 'kea.json')], {
      stdio: 'ignore',
      env: { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir },
    });
    await waitForUdp67(ns, child, 'kea');
  },
};

function perfdhcp(client: Netns, rate: number): Omit<Measurement, 'cpuMicrosPerDora'> {
  // perfdhcp exits non-zero whenever it lost packets; its report is what matters.
  const run = spawnSync('ip', ['netns', 'exec', client.name, 'perfdhcp', '-4', '-l', CLIENT_IF, '-r', String(rate), '-R', String(CLIENTS), '-p', String(seconds)], {
    encoding: 'utf8',
    timeout: (seconds + 30) * 1000,
  });
  const output = run.stdout ?? '';
  const exchanges = /Rate: ([\d.]+) 4-way exchanges\/second/.exec(output);
  const drops = [...output.matchAll(/drops ratio: ([\d.]+) ?%/g)].map((m) => Number(m[1]) / 100);
  if (!exchanges || drops.length < 2) throw new Error(`unexpected perfdhcp output:\n${output}`);
  return { rate, doraPerSecond: Number(exchanges[1]), dropRatio: Math.max(...drops) };
}

async function runOnce(server: ServerUnderTest, rate: number, serverNs: Netns, clientNs: Netns, dir: string): Promise<Measurement> {
  const runDir = mkdtempSync(join(dir, `${server.name}-`));
  await server.start(serverNs, runDir);
  try {
    const cpuBefore = serverNs.cpuSeconds();
    const exchanges = perfdhcp(clientNs, rate);
    const cpu = serverNs.cpuSeconds() - cpuBefore;
    const m = { ...exchanges, cpuMicrosPerDora: exchanges.doraPerSecond > 0 ? (cpu * 1e6) / (exchanges.doraPerSecond * seconds) : Infinity };
    console.log(
      `  ${server.name.padEnd(8)} offered ${String(rate).padStart(6)}/s  completed ${m.doraPerSecond.toFixed(0).padStart(6)} DORA/s  drops ${(m.dropRatio * 100).toFixed(2).padStart(6)}%  server CPU ${m.cpuMicrosPerDora.toFixed(0).padStart(5)} µs/DORA`,
    );
    return m;
  } finally {
    // Every process in the namespace: a leftover server would hold port 67 into the next run.
    await serverNs.stopAll(3000);
    rmSync(runDir, { recursive: true, force: true });
  }
}

/**
 * Rising rates; at each rate every server runs back to back, in alternating order, `repeats`
 * times, keeping its best run: load from anything else on the machine then falls on all of
 * them alike, and a passing load spike does not decide a rate. A server drops out once its
 * best run at a rate loses more than GIVE_UP_DROP_RATIO of the exchanges.
 */
async function measureAll(servers: ServerUnderTest[], serverNs: Netns, clientNs: Netns, dir: string): Promise<Map<string, Measurement[]>> {
  const results = new Map<string, Measurement[]>(servers.map((s) => [s.name, []]));
  let turn = 0;
  for (const rate of rates) {
    const best = new Map<string, Measurement>();
    for (let r = 0; r < repeats; r++) {
      const order = turn++ % 2 === 0 ? servers : [...servers].reverse();
      for (const server of order) {
        if (results.get(server.name)!.some((m) => m.dropRatio > GIVE_UP_DROP_RATIO)) continue;
        const m = await runOnce(server, rate, serverNs, clientNs, dir);
        const previous = best.get(server.name);
        if (!previous || m.doraPerSecond > previous.doraPerSecond) best.set(server.name, m);
      }
    }
    for (const [name, m] of best) results.get(name)!.push(m);
  }
  return results;
}

function sustained(results: Measurement[]): number {
  return Math.max(0, ...results.filter((m) => m.dropRatio <= MAX_DROP_RATIO).map((m) => m.doraPerSecond));
}

function peak(results: Measurement[]): number {
  return Math.max(0, ...results.map((m) => m.doraPerSecond));
}

/** Median CPU per exchange over the runs the server kept up with (drops <= 1%). */
function cpuPerDora(results: Measurement[]): number {
  const kept = results.filter((m) => m.dropRatio <= MAX_DROP_RATIO).map((m) => m.cpuMicrosPerDora).sort((a, b) => a - b);
  return kept.length === 0 ? Infinity : kept[Math.floor(kept.length / 2)]!;
}

function ratio(a: number, b: number): string {
  return b > 0 ? (a / b).toFixed(2) : 'n/a';
}

async function main(): Promise<void> {
  const need = requirements({ root: true, commands: ['ip', 'ss', 'perfdhcp', 'kea-dhcp4'] });
  if (!need.ok) {
    console.error(`bench/dhcp: cannot run: ${need.reason}`);
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'shdhcp-bench-'));
  const serverNs = Netns.create('shdhcp');
  const clientNs = Netns.create('shdhcp');
  const cleanup = () => {
    clientNs.destroy();
    serverNs.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    serverNs.link(clientNs, { ifname: SERVER_IF, cidr: `${SERVER_IP}/16` }, { ifname: CLIENT_IF, cidr: `${CLIENT_IP}/16` });
    console.log(
      `DHCP DORA benchmark: perfdhcp -R ${CLIENTS} -p ${seconds}, pool ${POOL.start}-${POOL.end}, leases persisted, fresh store per run, best of ${repeats} per rate`,
    );
    const servers = [ours, kea];
    const results = await measureAll(servers, serverNs, clientNs, dir);
    const summary = (name: string) => {
      const r = results.get(name) ?? [];
      return { sustained: sustained(r), peak: peak(r), cpu: cpuPerDora(r) };
    };
    console.log(`\n${'server'.padEnd(8)} ${'sustained DORA/s (drops <= 1%)'.padStart(30)} ${'peak completed DORA/s'.padStart(22)} ${'CPU µs/DORA'.padStart(12)}`);
    for (const server of servers) {
      const s = summary(server.name);
      console.log(`${server.name.padEnd(8)} ${s.sustained.toFixed(0).padStart(30)} ${s.peak.toFixed(0).padStart(22)} ${s.cpu.toFixed(0).padStart(12)}`);
    }
    const shoal = summary('shoal');
    const keaSummary = summary('kea');
    console.log(`ratio shoal/kea: sustained ${ratio(shoal.sustained, keaSummary.sustained)}, peak ${ratio(shoal.peak, keaSummary.peak)} (goal >= 1.00)`);
    // On a shared machine the rates move with everyone else's load; CPU per exchange moves less.
    console.log(`CPU efficiency kea/shoal (µs per DORA, higher favours shoal): ${ratio(keaSummary.cpu, shoal.cpu)}`);
  } finally {
    cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
