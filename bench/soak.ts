// The fault soak: a simulated rack of N nodes (1,000) against the appliance as its own process for M
// minutes (10), with random faults injected into the rack (power-on failures, hung boots, lost
// nodes, BMC timeouts and wrong replies), random operator changes through the API (images, power,
// rollouts, freezes), and the appliance killed with SIGKILL and started again on the same data
// every K seconds (120). Then it stops the chaos, lets the rack settle and prints the figures:
// every node converged or held with a reason; no revision gap in the event log; every write
// acknowledged before a kill present, and every event read before a kill unchanged; the
// appliance's RSS and open file descriptors per restart segment, first against last; faults
// injected and recovered by kind. Exits 1 if a check fails. Everything on loopback, every loop
// bounded. Run: npm run soak [-- --minutes M --nodes N --restart-seconds K --seed S]
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { killAndWait, killChildAppliances, startChildAppliance } from '../test/support/child-appliance.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    nodes: { type: 'string', default: '1000' },
    'restart-seconds': { type: 'string', default: '120' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
  },
});
const positive = (name: string, text: string, max: number): number => {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new Error(`--${name} takes a number above 0 and at most ${max}, not "${text}"`);
  return n;
};
const MINUTES = positive('minutes', values.minutes, 24 * 60);
const NODES = Math.round(positive('nodes', values.nodes, 10_000));
const RESTART_MS = positive('restart-seconds', values['restart-seconds'], 24 * 3600) * 1000;
const SEED = Math.round(positive('seed', values.seed, 2 ** 31));
/** After the chaos, how long the rack may take to settle before the node check fails. */
const SETTLE_MS = 5 * 60_000;

/** mulberry32: the same seed, the same choices (timing still differs from run to run). */
let seedState = SEED;
function random(): number {
  seedState = (seedState + 0x6d2b79f5) | 0;
  let t = seedState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the appliance, as a child process on loopback

const dir = mkdtempSync(join(tmpdir(), 'shoal-soak-'));
const configPath = join(dir, 'config.yaml');
writeFileSync(
  configPath,
  [
    `dataDir: ${join(dir, 'data')}`,
    'api: { listen: 127.0.0.1, port: 0 }',
    'log: { level: error }',
    // Short backoffs and a short boot deadline, so a hung boot is noticed and retried within the run.
    'engine: { retryBudget: 5, backoffBaseMs: 500, backoffMaxMs: 8000, timeouts: { run.boot: 30000 } }',
    'modules:',
    '  - name: sim',
    '    options: { persist: true, latencies: { probeMs: 50, powerMs: 1000, armMs: 50, bootStageMs: 500, drainMs: 300, lostAfterMs: 3000, bmcTimeoutMs: 2000 } }',
    '',
  ].join('\n'),
);

let child: ChildProcess | undefined;
let url = '';
let token = '';

interface Reply {
  status: number;
  body: any;
}

/** One API call; a connection refused or reset (the appliance is down) or no answer in `timeoutMs` is status 0. */
async function call(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<Reply> {
  try {
    const res = await fetch(`${url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'x-shoal-operator': 'soak', ...(body === undefined ? {} : { 'content-type': typeof body === 'string' ? 'application/yaml' : 'application/json' }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  } catch (err) {
    return { status: 0, body: { error: (err as Error).message } };
  }
}

// ---- what is measured

interface SoakEvent {
  rev: number;
  at: number;
  nodeId: string | null;
  kind: string;
  facet: string;
  new: string | null;
}
/** Every event read from the log, by revision, as first read (before any kill it lived through). */
const seen = new Map<number, string>();
let readUpTo = 0;

async function readLog(): Promise<SoakEvent[] | undefined> {
  const events: SoakEvent[] = [];
  for (let page = 0; page < 1000; page++) {
    const reply = await call('GET', `/events?after=${readUpTo}&limit=10000`);
    if (reply.status !== 200) return undefined;
    const batch = reply.body.events as SoakEvent[];
    for (const e of batch) {
      if (!seen.has(e.rev)) seen.set(e.rev, JSON.stringify(e));
      readUpTo = Math.max(readUpTo, e.rev);
      events.push(e);
    }
    if (batch.length < 10000) return events;
  }
  return events;
}

/** An operator write the API acknowledged (2xx), and the fact the log must hold for it at that moment. */
interface Ack {
  what: 'image' | 'power' | 'rollout' | 'freeze' | 'thaw';
  at: number;
  nodeId: string | null;
  kind: string;
  facet: string;
  value: string | null;
}
const acks: Ack[] = [];
const refused = new Map<string, number>();
const note = (what: string): void => {
  refused.set(what, (refused.get(what) ?? 0) + 1);
};

interface Sample {
  rssKiB: number;
  fds: number;
}
const segments: Sample[][] = [];
function sample(): void {
  const pid = child?.pid;
  if (!pid || child!.exitCode !== null) return;
  try {
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    segments.at(-1)!.push({ rssKiB: Number(rss), fds: readdirSync(`/proc/${pid}/fd`).length });
  } catch {
    // the process went between the check and the read
  }
}

type FaultKind = 'power-on-fails' | 'boot-hangs' | 'lost' | 'bmc-timeout' | 'bmc-wrong-reply';
interface InjectedFault {
  kind: FaultKind;
  nodeId: string;
  at: number;
  /** pending: not seen yet; showed: the node was seen unconverged after it; recovered: converged again after that. */
  state: 'pending' | 'showed' | 'recovered';
}
const faults: InjectedFault[] = [];

// ---- the rack

interface NodeView {
  id: string;
  name: string;
  labels: Record<string, string>;
  phase: string;
  reason?: string;
}
let nodes: NodeView[] = [];
const direct = () => nodes.filter((n) => n.labels.group === 'direct');
const RACK_SIZE = 20;
const racks = Math.ceil(NODES / RACK_SIZE);

async function start(): Promise<void> {
  const started = await startChildAppliance(configPath, 120_000);
  child = started.child;
  url = started.url;
  token = readFileSync(join(dir, 'data', 'api-token'), 'utf8').trim();
  segments.push([]);
  sample();
}

async function enroll(): Promise<void> {
  const rows = Array.from({ length: NODES }, (_, i) => {
    const mac = `52:54:00:5c:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
    const rack = Math.floor(i / RACK_SIZE);
    // A fifth of the racks change only by rollouts; the rest by direct changes, so that the two
    // never write the same node's desired state and each acknowledged write can be checked exactly.
    const group = rack % 5 === 0 ? 'rollout' : 'direct';
    return `  - { name: s${String(i).padStart(5, '0')}, macs: ["${mac}"], bmc: "sim://s${i}", labels: { rack: r${rack}, group: ${group} }, desired: { power: "on", image: "compute@1" } }`;
  });
  const reply = await call('POST', '/inventory', ['nodes:', ...rows, ''].join('\n'), 300_000);
  if (reply.status !== 201 || reply.body.imported !== NODES) throw new Error(`enrolling ${NODES} nodes failed: ${reply.status} ${JSON.stringify(reply.body).slice(0, 500)}`);
  await refreshNodes();
}

async function refreshNodes(): Promise<boolean> {
  const started = Date.now();
  const reply = await call('GET', '/nodes');
  if (reply.status !== 200) return false;
  nodes = reply.body.nodes as NodeView[];
  const phase = new Map(nodes.map((n) => [n.id, n.phase]));
  for (const f of faults) {
    const p = phase.get(f.nodeId);
    if (f.at >= started || p === undefined) continue;
    if (f.state === 'pending' && p !== 'converged') f.state = 'showed';
    else if (f.state === 'showed' && p === 'converged') f.state = 'recovered';
  }
  return true;
}

// ---- chaos: faults into the rack, and operator changes

async function injectFault(): Promise<void> {
  const node = pick(nodes);
  const kind = pick<FaultKind>(['power-on-fails', 'boot-hangs', 'lost', 'bmc-timeout', 'bmc-wrong-reply']);
  const times = 1 + Math.floor(random() * 2);
  const fault = { 'power-on-fails': { kind, times }, 'boot-hangs': { kind, times: 1 }, lost: { kind: 'dies' }, 'bmc-timeout': { kind, times }, 'bmc-wrong-reply': { kind, times } }[kind];
  const at = Date.now();
  if ((await call('POST', `/sim/nodes/${node.id}/faults`, fault)).status !== 200) return note(`fault ${kind}`);
  // Faults that wait for the next power-on or boot get one: someone pulls the node's power.
  if (kind !== 'lost' && (await call('POST', `/sim/nodes/${node.id}/faults`, { kind: 'power-off' })).status !== 200) return note(`fault ${kind}`);
  faults.push({ kind, nodeId: node.id, at, state: 'pending' });
}

const frozenNodes = new Map<string, number>();
let applianceFrozenUntil = 0;
let lastRollout = 0;
let lastApplianceFreeze = 0;

async function desired(what: 'image' | 'power', node: NodeView, facet: string, value: string): Promise<void> {
  const reply = await call('PATCH', `/nodes/${node.id}/desired`, { [facet]: value });
  if (reply.status === 200) acks.push({ what, at: Date.now(), nodeId: node.id, kind: 'desired', facet, value });
  else note(what);
}

async function freeze(what: 'freeze' | 'thaw', nodeId: string | null): Promise<boolean> {
  const reply = await call('POST', nodeId ? `/nodes/${nodeId}/${what}` : `/${what}`, {});
  if (reply.status !== 200) {
    note(what);
    return false;
  }
  acks.push({ what, at: Date.now(), nodeId, kind: nodeId ? 'engine' : 'appliance', facet: nodeId ? 'frozen' : 'freeze', value: what === 'freeze' ? 'true' : null });
  return true;
}

async function operatorChange(now: number): Promise<void> {
  for (const [id, until] of frozenNodes) if (until <= now && (await freeze('thaw', id))) frozenNodes.delete(id);
  if (applianceFrozenUntil && applianceFrozenUntil <= now && (await freeze('thaw', null))) applianceFrozenUntil = 0;
  if (now - lastRollout > 20_000) {
    lastRollout = now;
    const rack = pick(Array.from({ length: racks }, (_, i) => i).filter((r) => r % 5 === 0));
    const image = `compute@${1 + Math.floor(random() * 3)}`;
    const reply = await call('POST', '/rollouts', { selector: `group=rollout,rack=r${rack}`, desired: { image }, maxUnavailable: '25%' });
    if (reply.status === 201) acks.push({ what: 'rollout', at: Date.now(), nodeId: null, kind: 'rollout', facet: reply.body.id, value: null });
    else note(reply.status === 422 ? 'rollout (nothing to change)' : 'rollout');
    return;
  }
  if (now - lastApplianceFreeze > 60_000 && !applianceFrozenUntil) {
    lastApplianceFreeze = now;
    if (await freeze('freeze', null)) applianceFrozenUntil = now + 5_000;
    return;
  }
  const node = pick(direct());
  const roll = random();
  if (roll < 0.5) await desired('image', node, 'image', `compute@${1 + Math.floor(random() * 3)}`);
  else if (roll < 0.85) await desired('power', node, 'power', random() < 0.3 ? 'off' : 'on');
  else if (!frozenNodes.has(node.id) && (await freeze('freeze', node.id))) frozenNodes.set(node.id, now + 10_000 + random() * 10_000);
}

// ---- the run

const checks: { name: string; ok: boolean; detail: string }[] = [];
const check = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

async function main(): Promise<void> {
  console.log(`soak: ${NODES} simulated nodes, ${MINUTES} min, SIGKILL and restart every ${RESTART_MS / 1000} s, seed ${SEED}, data in ${dir}`);
  await start();
  await enroll();
  const began = Date.now();
  const end = began + MINUTES * 60_000;
  let nextRestart = began + RESTART_MS;
  let nextFault = began;
  let nextChange = began;
  let nextPoll = began;
  let nextSample = began;
  let restarts = 0;
  const restartStalls: number[] = [];
  // Bounded: the chaos ends at `end`, each turn waits at least 100 ms.
  while (Date.now() < end) {
    const now = Date.now();
    if (now >= nextRestart) {
      // Everything read up to here must survive the kill unchanged.
      await readLog();
      await killAndWait(child!);
      const down = Date.now();
      await start();
      restartStalls.push(Date.now() - down);
      restarts++;
      console.log(`soak: ${((Date.now() - began) / 1000).toFixed(0)} s: killed and restarted (${restarts}), back in ${((Date.now() - down) / 1000).toFixed(1)} s`);
      nextRestart = Date.now() + RESTART_MS;
      continue;
    }
    if (now >= nextFault) {
      await injectFault();
      nextFault = now + 500;
    }
    if (now >= nextChange) {
      await operatorChange(now);
      nextChange = now + 1_000;
    }
    if (now >= nextPoll) {
      await refreshNodes();
      await readLog();
      nextPoll = now + 3_000;
      const counts = nodes.reduce<Record<string, number>>((c, n) => ({ ...c, [n.phase]: (c[n.phase] ?? 0) + 1 }), {});
      if (Math.floor((now - began) / 30_000) !== Math.floor((now - 3_000 - began) / 30_000)) console.log(`soak: ${((now - began) / 1000).toFixed(0)} s: ${JSON.stringify(counts)}, ${faults.length} faults, ${acks.length} writes acknowledged, log at ${readUpTo}`);
    }
    if (now >= nextSample) {
      sample();
      nextSample = now + 5_000;
    }
    await sleep(100);
  }

  // The chaos stops; frozen nodes and the appliance are thawed, and the rack settles.
  for (const id of frozenNodes.keys()) await freeze('thaw', id);
  if (applianceFrozenUntil) await freeze('thaw', null);
  const settleStart = Date.now();
  let settled = false;
  while (Date.now() - settleStart < SETTLE_MS) {
    if (await refreshNodes()) {
      const rollouts = await call('GET', '/rollouts');
      const running = rollouts.status === 200 ? (rollouts.body.rollouts as { status: string }[]).filter((r) => r.status === 'running').length : 1;
      if (running === 0 && nodes.every((n) => n.phase === 'converged' || (n.phase === 'failed' && n.reason))) {
        settled = true;
        break;
      }
    }
    sample();
    await sleep(2_000);
  }
  const settleMs = Date.now() - settleStart;
  const finalLog = (await readFullLog()) ?? [];
  sample();

  // ---- figures
  const phases = nodes.reduce<Record<string, number>>((c, n) => ({ ...c, [n.phase]: (c[n.phase] ?? 0) + 1 }), {});
  const held = nodes.filter((n) => n.phase === 'failed');
  const reasons = new Map<string, number>();
  for (const n of held) {
    const r = (n.reason ?? '(no reason)').replace(/[0-9a-f-]{36}/g, 'ID').replace(/\d+/g, 'N');
    reasons.set(r, (reasons.get(r) ?? 0) + 1);
  }
  check(
    'every node converged, or held with a reason',
    settled && held.every((n) => n.reason),
    `${phases.converged ?? 0} converged, ${held.length} held, ${NODES - (phases.converged ?? 0) - held.length} neither, settled in ${(settleMs / 1000).toFixed(0)} s` +
      [...reasons].map(([r, n]) => `\n      held ×${n}: ${r}`).join(''),
  );

  const revs = finalLog.map((e) => e.rev);
  const gaps = revs.filter((r, i) => r !== i + 1).length;
  check('no revision gap in the event log', revs.length > 0 && gaps === 0, `${revs.length} events, revisions ${revs[0] ?? '-'}..${revs.at(-1) ?? '-'}, ${gaps} out of place`);

  const byRev = new Map(finalLog.map((e) => [e.rev, e]));
  let changed = 0;
  for (const [rev, json] of seen) if (byRev.get(rev) === undefined || JSON.stringify(byRev.get(rev)) !== json) changed++;
  const lost = acks.filter((a) => !acknowledgedFactHeld(a, finalLog));
  const ackKinds = new Map<string, number>();
  for (const a of acks) ackKinds.set(a.what, (ackKinds.get(a.what) ?? 0) + 1);
  check(
    'every write acknowledged before a kill is present',
    lost.length === 0 && changed === 0,
    `${acks.length} operator writes acknowledged (${[...ackKinds].map(([k, n]) => `${k} ${n}`).join(', ')}), ${lost.length} missing; ${seen.size} events read during the run, ${changed} missing or changed after the restarts; ` +
      `refused or unanswered while the appliance was down or busy: ${[...refused].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}` +
      lost.slice(0, 5).map((a) => `\n      missing: ${JSON.stringify(a)}`).join(''),
  );

  const first = segments.find((s) => s.length > 0) ?? [];
  const last = segments.findLast((s) => s.length > 0) ?? [];
  const peak = (s: Sample[], key: keyof Sample) => Math.max(...s.map((x) => x[key]));
  const rssFlat = peak(last, 'rssKiB') <= peak(first, 'rssKiB') * 1.5;
  const fdsFlat = peak(last, 'fds') <= peak(first, 'fds') + 16;
  check(
    'RSS and open file descriptors flat across the run',
    segments.length >= 2 && rssFlat && fdsFlat,
    `${segments.length} segments (${restarts} restarts, back in ${restartStalls.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ') || '-'}); peak RSS MiB per segment: ${segments.map((s) => (s.length ? (peak(s, 'rssKiB') / 1024).toFixed(0) : '-')).join(', ')}; ` +
      `peak fds per segment: ${segments.map((s) => (s.length ? peak(s, 'fds') : '-')).join(', ')} (flat: last ≤ 1.5 × first RSS, ≤ first + 16 fds)`,
  );

  const kinds: FaultKind[] = ['power-on-fails', 'boot-hangs', 'lost', 'bmc-timeout', 'bmc-wrong-reply'];
  const phaseOf = new Map(nodes.map((n) => [n.id, n.phase]));
  const rows = kinds.map((kind) => {
    const of = faults.filter((f) => f.kind === kind);
    const recovered = of.filter((f) => f.state === 'recovered' || (f.state === 'pending' && phaseOf.get(f.nodeId) === 'converged')).length;
    const heldAfter = of.filter((f) => f.state !== 'recovered' && phaseOf.get(f.nodeId) === 'failed').length;
    return { kind, injected: of.length, showed: of.filter((f) => f.state !== 'pending').length, recovered, held: heldAfter, neither: of.length - recovered - heldAfter };
  });
  check(
    'faults injected and recovered, by kind',
    faults.length > 0 && rows.every((r) => r.neither === 0),
    rows.map((r) => `\n      ${r.kind.padEnd(16)} injected ${String(r.injected).padStart(5)}  seen ${String(r.showed).padStart(5)}  recovered ${String(r.recovered).padStart(5)}  node held ${String(r.held).padStart(4)}  neither ${r.neither}`).join('') +
      `\n      appliance SIGKILL ${' '.repeat(6)}${restarts} restarts, every one back (seen: the node was unconverged at a poll after the fault; recovered: converged again after that, or never seen to leave converged)`,
  );

  console.log('\nsoak figures');
  for (const c of checks) console.log(`  ${c.ok ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
}

/** The whole log from revision 1 (the incremental reads skip nothing but start where they left off). */
async function readFullLog(): Promise<SoakEvent[] | undefined> {
  const events: SoakEvent[] = [];
  let after = 0;
  for (let page = 0; page < 10_000; page++) {
    const reply = await call('GET', `/events?after=${after}&limit=10000`);
    if (reply.status !== 200) return undefined;
    const batch = reply.body.events as SoakEvent[];
    events.push(...batch);
    if (batch.length < 10000) return events;
    after = batch.at(-1)!.rev;
  }
  return events;
}

/**
 * The log holds what the API acknowledged: the latest event of that fact written up to the
 * acknowledgement carries its value (a patch that changed nothing left the earlier event as the
 * latest); a rollout's record exists.
 */
function acknowledgedFactHeld(ack: Ack, log: SoakEvent[]): boolean {
  let latest: SoakEvent | undefined;
  // Not a break at the first later event: an observation's time is when it was seen, so times
  // are not quite in revision order.
  for (const e of log) {
    if (e.at <= ack.at && e.kind === ack.kind && e.facet === ack.facet && (ack.kind === 'rollout' || e.nodeId === ack.nodeId)) latest = e;
  }
  if (ack.kind === 'rollout') return latest !== undefined;
  return latest ? latest.new === ack.value : ack.value === null;
}

let exitCode = 1;
try {
  await main();
  exitCode = checks.length > 0 && checks.every((c) => c.ok) ? 0 : 1;
} catch (err) {
  console.error(`soak: ${(err as Error).stack ?? err}`);
} finally {
  await killChildAppliances();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
