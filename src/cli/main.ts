#!/usr/bin/env node
// `shoal`: runs the appliance (`serve`) and drives a running one through its API.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { normalizeMac } from '../domain/node.js';
import { parseDesiredAssignments } from '../domain/state.js';
import { ApiClient, ApiError } from './client.js';
import { serve } from './serve.js';
import { renderTable, phaseColour } from './table.js';

const USAGE = `usage: shoal <command> [options]

appliance
  serve [--config FILE] [--data DIR] [--listen ADDR] [--port N] [--demo N]
                                  run the appliance; --demo enrolls N simulated nodes on a new store
nodes
  node add NAME --mac MAC [--mac MAC] --bmc URL [--bmc-password P] [--label k=v] [--arch A] [--firmware F]
  node list [--selector k=v,...] [--phase PHASE]
  node show NODE
  node set NODE... facet=value... [--selector k=v] [--wait] [--timeout SECONDS]
                                  facets: power=on|off boot=network|disk run=ready image=NAME@VER (value - clears)
  node rm NODE
  import FILE                     enroll every node of an inventory file (YAML), all or none
  discovered list                 machines that network-booted but are not in the inventory (pxe module)
  discovered enroll MAC NAME --bmc URL [--bmc-password P] [--label k=v] [--arch A] [--firmware F]
                                  enroll one as a node (firmware defaults to what its DHCP request said)
  discovered rm MAC               forget one
  export                          print the inventory as YAML (no secrets)
rollouts
  rollout start --selector k=v,... [--max-unavailable N|P%] facet=value... [--no-wait] [--timeout SECONDS]
                                  change the selected nodes a few at a time: at most N (default 1) of
                                  them unavailable at once; shows progress until done (exit 1: failed)
  rollout list                    rollouts with their status and progress
  rollout show ID                 a rollout and each of its nodes
  rollout pause ID | resume ID | cancel ID
                                  pause: nodes under way finish, no new one starts; resume also goes on
                                  from a failure once its failed nodes are released (shoal retry NODE)
images
  image add DIR                   import the image in DIR (its image.json, vmlinuz, initrd.img), read on the appliance host
  image list                      stored images, their digests, sizes and the nodes that want them
  image rm NAME@VER               remove an image no node wants
engine
  plan NODE                       the steps that take NODE from observed to desired, explained
  retry NODE                      release a node held as failed
  freeze [NODE] | thaw [NODE]     stop or resume new steps, for one node or the whole appliance
  events [--after REV] [--node NODE] [--follow]
  watch [--selector k=v]          a live table of nodes
common: --url URL (or SHOAL_URL), --token T (or SHOAL_TOKEN), --data DIR (where api-token is)`;

const options = {
  url: { type: 'string' },
  token: { type: 'string' },
  data: { type: 'string' },
  config: { type: 'string' },
  listen: { type: 'string' },
  port: { type: 'string' },
  demo: { type: 'string' },
  mac: { type: 'string', multiple: true },
  bmc: { type: 'string' },
  'bmc-password': { type: 'string' },
  label: { type: 'string', multiple: true },
  arch: { type: 'string' },
  firmware: { type: 'string' },
  selector: { type: 'string' },
  phase: { type: 'string' },
  wait: { type: 'boolean' },
  'no-wait': { type: 'boolean' },
  'max-unavailable': { type: 'string' },
  timeout: { type: 'string' },
  after: { type: 'string' },
  node: { type: 'string' },
  follow: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface NodeView {
  id: string;
  name: string;
  phase: string;
  reason?: string;
  lastError?: string;
  desired: Record<string, string>;
  observed: Record<string, { value: string; detail?: string }>;
  step?: { name: string; waiting?: string; attempt: number };
  labels: Record<string, string>;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true });
  const [command, sub, ...rest] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  if (command === 'serve') return serve(values);
  // `shoal node list | head -1`: a reader that stopped reading is no error; stop as Unix tools do.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
  const client = new ApiClient({ url: values.url, token: values.token, dataDir: values.data });

  switch (command) {
    case 'node':
      return nodeCommand(client, sub, rest, values);
    case 'import': {
      if (!sub) throw new UsageError('import needs an inventory file');
      const result = await client.request<{ imported: number }>('POST', '/inventory', readFileSync(sub, 'utf8'), 'application/yaml');
      console.log(`imported ${result.imported} nodes`);
      return 0;
    }
    case 'export':
      process.stdout.write(await client.request<string>('GET', '/inventory'));
      return 0;
    case 'image':
      return imageCommand(client, sub, rest);
    case 'discovered':
      return discoveredCommand(client, sub, rest, values);
    case 'rollout':
      return rolloutCommand(client, sub, rest, values);
    case 'plan':
      return planCommand(client, need(sub, 'plan needs a node'));
    case 'retry':
      await client.request('POST', `/nodes/${enc(need(sub, 'retry needs a node'))}/retry`);
      console.log(`${sub}: released with a fresh retry budget`);
      return 0;
    case 'freeze':
    case 'thaw':
      await client.request('POST', sub ? `/nodes/${enc(sub)}/${command}` : `/${command}`);
      console.log(`${sub ?? 'appliance'}: ${command === 'freeze' ? 'frozen (no new steps)' : 'thawed'}`);
      return 0;
    case 'events':
      return eventsCommand(client, values);
    case 'watch':
      return watchCommand(client, values.selector);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** The body of POST /nodes from `node add` / `discovered enroll` options. */
function nodeBody(name: string, macs: string[], values: Record<string, unknown>, command: string, defaults: { firmware?: string | undefined } = {}) {
  const labels = Object.fromEntries(((values.label as string[] | undefined) ?? []).map((l) => splitPair(l, 'label')));
  const firmware = (values.firmware as string | undefined) ?? defaults.firmware;
  return {
    name,
    macs,
    bmc: need(values.bmc as string | undefined, `${command} needs --bmc URL`),
    ...(values['bmc-password'] ? { bmcPassword: values['bmc-password'] } : {}),
    ...(values.arch ? { arch: values.arch } : {}),
    ...(firmware ? { firmware } : {}),
    labels,
  };
}

async function nodeCommand(client: ApiClient, sub: string | undefined, args: string[], values: Record<string, unknown>): Promise<number> {
  switch (sub) {
    case 'add': {
      const name = need(args[0], 'node add needs a name');
      const node = await client.request<NodeView>('POST', '/nodes', nodeBody(name, (values.mac as string[] | undefined) ?? [], values, 'node add'));
      console.log(`added ${node.name} (${node.id})`);
      return 0;
    }
    case 'list': {
      const query = new URLSearchParams();
      if (values.selector) query.set('selector', values.selector as string);
      if (values.phase) query.set('phase', values.phase as string);
      const { nodes, counts } = await client.request<{ nodes: NodeView[]; counts: Record<string, number> }>('GET', `/nodes?${query}`);
      console.log(renderTable(nodes));
      console.log(Object.entries(counts).map(([p, n]) => `${p} ${n}`).join('  '));
      return 0;
    }
    case 'show':
      console.log(JSON.stringify(await client.request('GET', `/nodes/${enc(need(args[0], 'node show needs a node'))}`), null, 2));
      return 0;
    case 'rm':
      await client.request('DELETE', `/nodes/${enc(need(args[0], 'node rm needs a node'))}`);
      console.log(`removed ${args[0]}`);
      return 0;
    case 'set':
      return setCommand(client, args, values);
    default:
      throw new UsageError(`unknown node command "${sub ?? ''}"`);
  }
}

interface EventView {
  rev: number;
  at: number;
  nodeId: string | null;
  kind: string;
  facet: string;
  old: string | null;
  new: string | null;
  detail: string | null;
  writer: string;
}

interface ImageView {
  ref: string;
  digest: string;
  size: number;
  importedAt: string;
  nodes: string[];
}

async function imageCommand(client: ApiClient, sub: string | undefined, args: string[]): Promise<number> {
  switch (sub) {
    case 'add': {
      // The appliance reads the directory itself: absolute, as the CLI sees it on the same host.
      const image = await client.request<ImageView>('POST', '/images', { path: resolve(need(args[0], 'image add needs a directory')) });
      console.log(`${image.ref} ${image.digest} (${formatBytes(image.size)})`);
      return 0;
    }
    case 'list': {
      const { images } = await client.request<{ images: ImageView[] }>('GET', '/images');
      const rows = images.map((i) => [i.ref, i.digest.slice(0, 19), formatBytes(i.size), i.importedAt.slice(0, 19).replace('T', ' '), i.nodes.length ? `${i.nodes.length} (${i.nodes.slice(0, 3).join(', ')}${i.nodes.length > 3 ? ', …' : ''})` : '-']);
      const header = ['IMAGE', 'DIGEST', 'SIZE', 'IMPORTED (UTC)', 'WANTED BY'];
      const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
      for (const row of [header, ...rows]) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
      return 0;
    }
    case 'rm':
      await client.request('DELETE', `/images/${enc(need(args[0], 'image rm needs NAME@VERSION'))}`);
      console.log(`removed ${args[0]}`);
      return 0;
    default:
      throw new UsageError(`unknown image command "${sub ?? ''}"`);
  }
}

interface DiscoveredView {
  mac: string;
  firmware?: string;
  ip?: string;
  vendorClassId?: string;
  firstSeen: string;
  lastSeen: string;
  requests: number;
}

async function discoveredCommand(client: ApiClient, sub: string | undefined, args: string[], values: Record<string, unknown>): Promise<number> {
  const list = async () => (await client.request<{ discovered: DiscoveredView[] }>('GET', '/discovered')).discovered;
  switch (sub) {
    case 'list': {
      const rows = (await list()).map((m) => [m.mac, m.firmware ?? '?', m.ip ?? '-', m.vendorClassId ?? '-', String(m.requests), m.lastSeen.slice(0, 19).replace('T', ' ')]);
      const header = ['MAC', 'FIRMWARE', 'ADDRESS', 'VENDOR CLASS', 'REQUESTS', 'LAST SEEN (UTC)'];
      const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
      for (const row of [header, ...rows]) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
      if (rows.length === 0) console.log('(none: every machine that network-booted is enrolled)');
      return 0;
    }
    case 'enroll': {
      const mac = normalizeMac(need(args[0], 'discovered enroll needs a MAC'));
      const name = need(args[1], 'discovered enroll needs a node name after the MAC');
      const machine = (await list()).find((m) => m.mac === mac);
      if (!machine) throw new UsageError(`${mac} is not a discovered machine (shoal discovered list)`);
      const node = await client.request<NodeView>('POST', '/nodes', nodeBody(name, [mac], values, 'discovered enroll', { firmware: machine.firmware }));
      console.log(`enrolled ${mac} as ${node.name} (${node.id})`);
      return 0;
    }
    case 'rm':
      await client.request('DELETE', `/discovered/${enc(need(args[0], 'discovered rm needs a MAC'))}`);
      console.log(`forgot ${args[0]}`);
      return 0;
    default:
      throw new UsageError(`unknown discovered command "${sub ?? ''}"`);
  }
}

function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

async function setCommand(client: ApiClient, args: string[], values: Record<string, unknown>): Promise<number> {
  const assignments = args.filter((a) => a.includes('='));
  let names = args.filter((a) => !a.includes('='));
  const patch = parseDesiredAssignments(assignments);
  if (values.selector) {
    const { nodes } = await client.request<{ nodes: NodeView[] }>('GET', `/nodes?selector=${enc(values.selector as string)}`);
    names = [...names, ...nodes.map((n) => n.name)];
  }
  if (names.length === 0) throw new UsageError('node set needs at least one node (or --selector)');
  for (const name of names) await client.request('PATCH', `/nodes/${enc(name)}/desired`, patch);
  console.log(`set ${assignments.join(' ')} on ${names.length} node${names.length === 1 ? '' : 's'}`);
  if (!values.wait) return 0;
  return waitForConvergence(client, names, Number(values.timeout ?? 900));
}

/** Shows each node's step as it goes until all converge or one fails; non-zero exit on failure. */
async function waitForConvergence(client: ApiClient, names: string[], timeoutSeconds: number): Promise<number> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const last = new Map<string, string>();
  // The desired change has to reach the executor before a converged phase means anything.
  await new Promise((r) => setTimeout(r, 200));
  for (;;) {
    const views = await Promise.all(names.map((n) => client.request<NodeView>('GET', `/nodes/${enc(n)}`)));
    for (const v of views) {
      const line = v.phase === 'converging' ? `${v.step?.waiting ? `waiting (${v.step.waiting}) for ` : ''}${v.step?.name ?? 'planning'}` : v.phase;
      if (last.get(v.name) !== line) {
        console.log(`${v.name.padEnd(16)} ${phaseColour(v.phase, line)}${v.reason ? `: ${v.reason}` : ''}`);
        last.set(v.name, line);
      }
    }
    const failed = views.filter((v) => v.phase === 'failed' || v.phase === 'blocked');
    if (views.every((v) => v.phase === 'converged' || v.phase === 'failed' || v.phase === 'blocked')) {
      console.log(`${views.length - failed.length} converged, ${failed.length} failed`);
      return failed.length ? 1 : 0;
    }
    if (Date.now() > deadline) {
      console.log(`gave up waiting after ${timeoutSeconds} s`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

interface RolloutView {
  id: string;
  status: string;
  reason?: string;
  selector: string;
  desired: Record<string, string | null>;
  maxUnavailable: number | string;
  limit: number;
  createdAt: string;
  createdBy: string;
  counts: Record<'pending' | 'in-progress' | 'done' | 'failed' | 'total', number>;
  unavailable?: number;
  nodes?: { id: string; name: string; state: string; reason?: string; phase: string }[];
  revision?: number;
}

const ROLLOUT_COLOURS: Record<string, string> = { done: 'converged', 'in-progress': 'converging', running: 'converging', failed: 'failed', paused: 'frozen', cancelled: 'frozen' };
const rolloutColour = (state: string, text = state) => phaseColour(ROLLOUT_COLOURS[state] ?? '', text);
const describeChange = (desired: Record<string, string | null>) =>
  Object.entries(desired)
    .map(([k, v]) => `${k}=${v ?? '-'}`)
    .join(' ');

async function rolloutCommand(client: ApiClient, sub: string | undefined, args: string[], values: Record<string, unknown>): Promise<number> {
  switch (sub) {
    case 'start': {
      const selector = need(values.selector as string | undefined, 'rollout start needs --selector k=v,... (the group of nodes to change)');
      const stray = args.find((a) => !a.includes('='));
      if (stray) throw new UsageError(`rollout start takes facet=value changes, not "${stray}" (the nodes are picked by --selector)`);
      if (args.length === 0) throw new UsageError('rollout start needs the change, e.g. image=compute@2');
      const raw = (values['max-unavailable'] as string | undefined) ?? '1';
      const body = { selector, desired: parseDesiredAssignments(args), maxUnavailable: /^\d+$/.test(raw) ? Number(raw) : raw };
      const r = await client.request<RolloutView>('POST', '/rollouts', body);
      const already = r.counts.done ? `; ${r.counts.done} already at the target` : '';
      console.log(`rollout ${r.id} started: ${describeChange(r.desired)} on ${r.counts.total} node${r.counts.total === 1 ? '' : 's'} (${r.selector}), at most ${r.limit} unavailable at a time${already}`);
      if (values['no-wait']) return 0;
      return followRollout(client, r, values.timeout === undefined ? undefined : Number(values.timeout));
    }
    case 'list': {
      const { rollouts } = await client.request<{ rollouts: RolloutView[] }>('GET', '/rollouts');
      printColumns(
        ['ROLLOUT', 'STATUS', 'DONE', 'FAILED', 'MAX', 'CHANGE', 'SELECTOR', 'CREATED (UTC)'],
        rollouts.map((r) => [r.id, r.status, `${r.counts.done}/${r.counts.total}`, String(r.counts.failed), String(r.limit), describeChange(r.desired), r.selector, r.createdAt.slice(0, 19).replace('T', ' ')]),
        1,
      );
      return 0;
    }
    case 'show': {
      const r = await client.request<RolloutView>('GET', `/rollouts/${enc(need(args[0], 'rollout show needs a rollout id'))}`);
      console.log(`${r.id}: ${rolloutColour(r.status)} — ${describeChange(r.desired)} on ${r.selector}, at most ${r.limit} unavailable (maxUnavailable ${r.maxUnavailable})`);
      const now = r.unavailable === undefined ? '' : `; unavailable now ${r.unavailable}`;
      console.log(`  done ${r.counts.done}  in progress ${r.counts['in-progress']}  pending ${r.counts.pending}  failed ${r.counts.failed}  of ${r.counts.total}${now}`);
      console.log(`  created ${r.createdAt.slice(0, 19).replace('T', ' ')} UTC by ${r.createdBy}`);
      if (r.reason) console.log(`  reason: ${r.reason}`);
      printColumns(['NODE', 'STATE', 'PHASE', 'REASON'], (r.nodes ?? []).map((n) => [n.name, n.state, n.phase, n.reason ?? '']), 1);
      return 0;
    }
    case 'pause':
    case 'resume':
    case 'cancel': {
      const r = await client.request<RolloutView>('POST', `/rollouts/${enc(need(args[0], `rollout ${sub} needs a rollout id`))}/${sub}`);
      console.log(`${r.id}: ${rolloutColour(r.status)} (done ${r.counts.done}/${r.counts.total}, in progress ${r.counts['in-progress']}, failed ${r.counts.failed})`);
      return 0;
    }
    default:
      throw new UsageError(`unknown rollout command "${sub ?? ''}"`);
  }
}

/** Prints each node's progress from the event stream until the rollout is done (0), failed or cancelled (1). */
async function followRollout(client: ApiClient, r: RolloutView, timeoutSeconds: number | undefined): Promise<number> {
  const names = new Map((r.nodes ?? []).map((n) => [n.id, n.name]));
  const nodes = new Map((r.nodes ?? []).map((n) => [n.id, { state: n.state, reason: n.reason }]));
  const count = (state: string) => [...nodes.values()].filter((n) => n.state === state).length;
  const abort = new AbortController();
  let result: number | undefined;
  const finish = (code: number) => {
    result = code;
    abort.abort();
  };
  const timer = timeoutSeconds === undefined ? undefined : setTimeout(() => (console.log(`gave up waiting after ${timeoutSeconds} s; the rollout goes on (shoal rollout show ${r.id})`), finish(1)), timeoutSeconds * 1000);
  process.once('SIGINT', () => finish(130));
  try {
    await client.stream(
      r.revision ?? 0,
      (e) => {
        if (result !== undefined || e.kind !== 'rollout' || e.facet !== r.id) return;
        const state = String(e.new);
        const detail = typeof e.detail === 'string' ? e.detail : undefined;
        if (typeof e.nodeId === 'string') {
          nodes.set(e.nodeId, { state, reason: detail });
          console.log(`${(names.get(e.nodeId) ?? e.nodeId).padEnd(16)} ${rolloutColour(state, state.padEnd(11))}  ${count('done')}/${nodes.size} done${detail ? `  ${detail}` : ''}`);
          return;
        }
        if (state === 'done') {
          console.log(`${r.id} done: ${count('done')} of ${nodes.size} nodes on ${describeChange(r.desired)}`);
          finish(0);
        } else if (state === 'failed') {
          const failed = [...nodes].filter(([, n]) => n.state === 'failed');
          console.log(`${r.id} failed: ${failed.map(([id, n]) => `${names.get(id) ?? id}: ${n.reason ?? 'failed'}`).join('; ')}`);
          console.log(`no new node starts; release the failed node with \`shoal retry NODE\`, then \`shoal rollout resume ${r.id}\``);
          finish(1);
        } else if (state === 'cancelled') {
          console.log(`${r.id} cancelled with ${count('done')} of ${nodes.size} nodes done`);
          finish(1);
        } else if (state === 'paused') {
          console.log(`${r.id} paused; nodes under way finish (\`shoal rollout resume ${r.id}\` goes on)`);
        } else {
          console.log(`${r.id} ${state}`);
        }
      },
      abort.signal,
    );
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
  }
  if (result === undefined) throw new Error(`the event stream ended before rollout ${r.id} did; it goes on (shoal rollout show ${r.id})`);
  return result;
}

/** Left-aligned columns; the column `colour` is coloured by its value. */
function printColumns(header: string[], rows: string[][], colour?: number): void {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  for (const [i, row] of [header, ...rows].entries()) {
    console.log(row.map((cell, c) => (i > 0 && c === colour ? rolloutColour(cell, cell.padEnd(widths[c]!)) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
  }
}

async function planCommand(client: ApiClient, name: string): Promise<number> {
  const plan = await client.request<{
    node: string;
    phase: string;
    reason?: string;
    from: Record<string, string>;
    target: Record<string, string[]>;
    reachable: boolean;
    steps: { step: string; kind: string; explain: string; expect: Record<string, string> }[];
    current?: { name: string };
    lastError?: string;
  }>('GET', `/nodes/${enc(name)}/plan`);
  const fmt = (m: Record<string, string | string[]>) =>
    Object.entries(m)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('|') : v}`)
      .join(' ');
  console.log(`${plan.node}: ${plan.phase}${plan.reason ? ` (${plan.reason})` : ''}`);
  console.log(`  observed  ${fmt(plan.from)}`);
  console.log(`  desired   ${fmt(plan.target) || '(nothing)'}`);
  if (plan.lastError) console.log(`  last error ${plan.lastError}`);
  if (!plan.reachable) console.log('  no sequence of steps reaches the desired state from here');
  else if (plan.steps.length === 0) console.log('  nothing to do');
  plan.steps.forEach((s, i) => {
    const marker = plan.current?.name === s.step && i === 0 ? '▶' : ' ';
    console.log(`  ${marker} ${i + 1}. ${s.step.padEnd(12)} ${s.kind === 'await' ? '(wait) ' : ''}${s.explain}`);
    console.log(`       → ${fmt(s.expect)}`);
  });
  return 0;
}

async function eventsCommand(client: ApiClient, values: Record<string, unknown>): Promise<number> {
  const names = await nodeNames(client);
  const print = (e: EventView) => {
    learnNodeName(names, e);
    const node = e.nodeId === null ? '-' : (names.get(e.nodeId) ?? e.nodeId.slice(0, 8));
    console.log(
      `${String(e.rev).padStart(8)} ${new Date(e.at).toISOString()} ${e.kind.padEnd(8)} ${node} ${e.facet} ${e.old ?? '∅'} → ${e.new ?? '∅'}${e.detail ? ` (${e.detail})` : ''} by ${e.writer}`,
    );
  };
  let after = Number(values.after ?? 0);
  if (!values.follow) {
    const query = new URLSearchParams({ after: String(after) });
    if (values.node) query.set('node', values.node as string);
    const { events } = await client.request<{ events: EventView[] }>('GET', `/events?${query}`);
    events.forEach(print);
    return 0;
  }
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  await client
    .stream(after, (e) => ((after = e.rev), print(e as unknown as EventView)), abort.signal)
    .catch((err: Error) => {
      if (err.name !== 'AbortError') throw err;
    });
  return 0;
}

/** Node names by id: the enrolled nodes now, and from the log itself those enrolled or removed since. */
async function nodeNames(client: ApiClient): Promise<Map<string, string>> {
  const { nodes } = await client.request<{ nodes: NodeView[] }>('GET', '/nodes');
  return new Map(nodes.map((n) => [n.id, n.name]));
}

/** A node event carries the node's spec as JSON: the new one, or the last one when it was removed. */
function learnNodeName(names: Map<string, string>, e: EventView): void {
  const spec = e.kind === 'node' && e.nodeId !== null ? (e.new ?? e.old) : null;
  if (spec === null) return;
  try {
    const { name } = JSON.parse(spec) as { name?: unknown };
    if (typeof name === 'string') names.set(e.nodeId!, name);
  } catch {
    // not a spec; the id stands in for the name
  }
}

async function watchCommand(client: ApiClient, selector: unknown): Promise<number> {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  const query = selector ? `?selector=${enc(selector as string)}` : '';
  while (!abort.signal.aborted) {
    const { nodes, counts, revision } = await client.request<{ nodes: NodeView[]; counts: Record<string, number>; revision: number }>('GET', `/nodes${query}`);
    const rows = process.stdout.rows ? Math.max(5, process.stdout.rows - 4) : 40;
    process.stdout.write('\x1b[H\x1b[2J');
    console.log(`shoal watch — ${client.base} — revision ${revision} — ${Object.entries(counts).map(([p, n]) => `${phaseColour(p, p)} ${n}`).join('  ')}`);
    console.log(renderTable(nodes.slice(0, rows)));
    if (nodes.length > rows) console.log(`… ${nodes.length - rows} more (narrow with --selector)`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return 0;
}

class UsageError extends Error {}

function need<T>(value: T | undefined, message: string): T {
  if (value === undefined || value === '') throw new UsageError(message);
  return value;
}

function splitPair(text: string, what: string): [string, string] {
  const i = text.indexOf('=');
  if (i <= 0) throw new UsageError(`${what} "${text}" is not key=value`);
  return [text.slice(0, i), text.slice(i + 1)];
}

const enc = encodeURIComponent;

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) console.error(`shoal: ${err.message}\n\n${USAGE}`);
    else if (err instanceof ApiError) console.error(`shoal: ${err.message}`);
    else console.error(`shoal: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
