// 10,000 node agents against one appliance: a separate Node process plays the agents (hello, then
// a heartbeat every interval with jitter, over keep-alive HTTP connections) while this process
// runs the appliance with the agent module. Prints the appliance's CPU share over the measured
// window and the heartbeat latency the agents saw, then the same client against a bare node:http
// server that only parses the JSON and answers (the floor any appliance pays), measured in the
// same run. Run: npx tsx bench/agents.ts [--agents N] [--seconds S] [--interval S] [--fresh]
// (--fresh: a new connection per request, as busybox wget does, instead of keep-alive).
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import type { NodeSpec } from '../src/domain/node.js';
import type { ModuleHost, ShoalModule } from '../src/engine/module.js';
import { createModule } from '../modules/agent/index.js';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '60' },
    interval: { type: 'string', default: '10' },
    fresh: { type: 'boolean', default: false },
    client: { type: 'boolean', default: false },
  },
});

interface ClientJob {
  url: string;
  agents: { node: string; token: string }[];
  intervalSeconds: number;
  measureSeconds: number;
  fresh: boolean;
}

interface ClientResult {
  heartbeats: number;
  /** Every hello's HTTP status (0: no answer), counted over the whole run. */
  helloStatuses: Record<string, number>;
  statuses: Record<string, number>;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  cpuShare: number;
}

type ClientMessage = { kind: 'measure-start' } | { kind: 'measure-end' } | { kind: 'result'; result: ClientResult };

if (values.client) await runClient();
else await main();

async function main(): Promise<void> {
  const count = Number(values.agents);
  const intervalSeconds = Number(values.interval);
  const measureSeconds = Number(values.seconds);
  console.log(`${count} agents, heartbeat every ${intervalSeconds} s ±10 %, ${measureSeconds} s measured, ${values.fresh ? 'a connection per request' : 'keep-alive connections'}; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);

  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-agents-'));
  try {
    let moduleHost: ModuleHost | undefined;
    const armer: ShoalModule = { name: 'bench-armer', start: (host) => void (moduleHost = host) };
    const config = loadConfig(undefined, { dataDir: dir, api: { listen: '127.0.0.1', port: 0 } });
    const appliance = await Appliance.start(config, { modules: [createModule({ intervalSeconds }), armer], log: createLogger('warn') });
    const specs: NodeSpec[] = Array.from({ length: count }, (_, i) => ({
      name: `a${String(i).padStart(5, '0')}`,
      macs: [`52:54:01:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`],
      bmc: { scheme: 'ipmi', host: `10.1.${i >> 8}.${i & 0xff}` },
      arch: 'x86_64',
      firmware: 'uefi',
      labels: {},
    }));
    const nodes = await appliance.state.addNodes(specs.map((spec) => ({ spec })), 'bench');
    const tokens = moduleHost!.services.get('bootTokens')!;
    // Armed as the pxe module arms a boot: a bootstrap, then boot=armed (a bootstrap counts only then).
    const agents = nodes.map((n) => {
      const token = tokens.issue(n.id, 'compute@1');
      moduleHost!.observe(n.id, 'boot', 'armed', 'compute@1');
      return { node: n.id, token };
    });

    const applianceRun = await measure({ url: appliance.url, agents, intervalSeconds, measureSeconds, fresh: values.fresh });
    const ready = nodes.filter((n) => appliance.state.observed(n.id).run?.value === 'ready').length;
    await appliance.stop();
    report('appliance (agent module)', applianceRun);
    console.log(`  nodes observed run=ready at the end: ${ready} of ${count}`);

    const peer = await bareServer(intervalSeconds);
    const peerRun = await measure({ url: peer.url, agents, intervalSeconds, measureSeconds, fresh: values.fresh });
    await new Promise<void>((resolve) => (peer.server.closeAllConnections(), peer.server.close(() => resolve())));
    report('bare node:http (JSON parse + reply)', peerRun);
    console.log(`appliance / bare CPU: ${(applianceRun.serverCpuShare / peerRun.serverCpuShare).toFixed(2)}x; heartbeat p99 appliance ${applianceRun.client.p99Ms.toFixed(1)} ms vs bare ${peerRun.client.p99Ms.toFixed(1)} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Run {
  client: ClientResult;
  /** This process's CPU time over the window divided by the window's wall time (1.0 = one core). */
  serverCpuShare: number;
  cpuPerHeartbeatUs: number;
  loopDelayP99Ms: number;
  rssMb: number;
}

/** Runs the agent client against `url` and measures this process over the client's window. */
function measure(job: ClientJob): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const loop = monitorEventLoopDelay({ resolution: 10 });
    let cpu0 = process.cpuUsage();
    let wall0 = 0;
    let share = 0;
    let cpuUs = 0;
    let rss = 0;
    child.on('message', (message: ClientMessage) => {
      if (message.kind === 'measure-start') {
        cpu0 = process.cpuUsage();
        wall0 = performance.now();
        loop.enable();
      } else if (message.kind === 'measure-end') {
        const cpu = process.cpuUsage(cpu0);
        cpuUs = cpu.user + cpu.system;
        share = cpuUs / 1000 / (performance.now() - wall0);
        rss = process.memoryUsage().rss / 2 ** 20;
        loop.disable();
      } else {
        resolve({ client: message.result, serverCpuShare: share, cpuPerHeartbeatUs: cpuUs / message.result.heartbeats, loopDelayP99Ms: loop.percentile(99) / 1e6, rssMb: rss });
      }
    });
    child.on('exit', (code) => code !== 0 && reject(new Error(`agent client exited with ${code}`)));
    child.send(job);
  });
}

function report(name: string, run: Run): void {
  const c = run.client;
  console.log(`${name}:`);
  console.log(`  server CPU ${(run.serverCpuShare * 100).toFixed(1)} % of one core (${(run.serverCpuShare * 50).toFixed(1)} % of 2 cores), ${run.cpuPerHeartbeatUs.toFixed(0)} µs per heartbeat, event-loop delay p99 ${run.loopDelayP99Ms.toFixed(1)} ms, RSS ${run.rssMb.toFixed(0)} MB`);
  console.log(`  ${c.heartbeats} heartbeats measured, statuses ${JSON.stringify(c.statuses)}, ${c.errors} without an answer, hellos ${JSON.stringify(c.helloStatuses)}; latency p50 ${c.p50Ms.toFixed(2)} ms, p99 ${c.p99Ms.toFixed(2)} ms, max ${c.maxMs.toFixed(1)} ms; client CPU ${(c.cpuShare * 100).toFixed(1)} % of one core`);
}

/** The floor: reads the body, parses the JSON, answers like the appliance does. */
async function bareServer(intervalSeconds: number): Promise<{ server: Server; url: string }> {
  const reply = `interval=${intervalSeconds}\naction=none\n`;
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
    req.on('end', () => {
      JSON.parse(raw);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(reply) });
      res.end(reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The agents: hellos spread over one interval, then heartbeats; measures the window after a warm-up interval. */
async function runClient(): Promise<void> {
  const job = await new Promise<ClientJob>((resolve) => process.once('message', (m) => resolve(m as ClientJob)));
  const send = (m: ClientMessage) => process.send!(m);
  // Enough sockets that no request waits in the pool for another agent's (real agents each have
  // their own connection). FIFO keeps every pooled socket busy (LIFO leaves some idle until the server's 5 s keep-alive
  // timeout closes them, and their reopening bursts show as SYN-retry latency); a free socket is
  // dropped after 4 s, before the server would close it under a request in flight.
  const pool = job.fresh ? undefined : new Agent({ keepAlive: true, maxSockets: 1024, scheduling: 'fifo', timeout: 4_000 });
  const intervalMs = job.intervalSeconds * 1000;
  const bootId = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  const helloStatuses: Record<string, number> = {};
  let measuring = false;
  let stopped = false;

  // The token goes first in the body (PROTOCOL.md); the reply's body is read for a hello's boot token.
  const post = (path: string, token: string, fields: string): Promise<{ status: number; text: string }> =>
    new Promise((resolve) => {
      const body = `{"token":"${token}",${fields.slice(1)}`;
      const req = request(`${job.url}${path}`, {
        method: 'POST',
        agent: pool ?? false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
      req.on('response', (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', () => resolve({ status: 0, text: '' }));
      req.end(body);
    });

  // Each simulated agent follows PROTOCOL.md: hello until a 200 (with back-off), then heartbeats;
  // a 409 sends it back to hello.
  job.agents.forEach(({ node, token: bootstrap }, i) => {
    // The bootstrap until a hello's reply hands out the boot token (the bare server hands out none).
    let token = bootstrap;
    const hello = JSON.stringify({ node, bootId: bootId(i), image: 'compute@1', bakedImage: 'compute@1', kernel: '6.1.0-bench', uptime: 5, interfaces: [{ name: 'eth0', mac: '52:54:00:00:00:01', ipv4: ['10.0.0.2/24'] }] });
    const sayHello = async () => {
      if (stopped) return;
      const { status, text } = await post('/agent/v1/hello', token, hello);
      helloStatuses[status] = (helloStatuses[status] ?? 0) + 1;
      token = /^token=(.+)$/m.exec(text)?.[1] ?? token;
      if (status === 200) setTimeout(heartbeat, intervalMs * (0.9 + Math.random() * 0.2));
      else setTimeout(sayHello, 1_000 + Math.random() * 500);
    };
    const heartbeat = async () => {
      if (stopped) return;
      const started = performance.now();
      const { status } = await post('/agent/v1/heartbeat', token, JSON.stringify({ node, bootId: bootId(i), uptime: process.uptime(), state: 'running' }));
      if (measuring) {
        latencies.push(performance.now() - started);
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status === 0) errors++;
      }
      if (status === 409) setTimeout(sayHello, 1_000 + Math.random() * 500);
      else setTimeout(heartbeat, intervalMs * (0.9 + Math.random() * 0.2));
    };
    setTimeout(sayHello, Math.random() * intervalMs);
  });

  // One interval of hellos, one of warm-up, then the measured window.
  await new Promise((resolve) => setTimeout(resolve, 2 * intervalMs));
  measuring = true;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  send({ kind: 'measure-start' });
  await new Promise((resolve) => setTimeout(resolve, job.measureSeconds * 1000));
  send({ kind: 'measure-end' });
  measuring = false;
  stopped = true;
  const cpu = process.cpuUsage(cpu0);
  const cpuShare = (cpu.user + cpu.system) / 1000 / (performance.now() - wall0);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  send({ kind: 'result', result: { heartbeats: latencies.length, helloStatuses, statuses, errors, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: latencies.at(-1) ?? NaN, cpuShare } });
  pool?.destroy();
  process.disconnect();
}
