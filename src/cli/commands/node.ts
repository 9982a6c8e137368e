// `shoal node …`: enroll, list, show, change and remove nodes; `node set --wait` follows each node's
// steps until it converges or fails.
import { parseDesiredAssignments } from '../../domain/state.js';
import { describeHardware } from '../../contracts/hardware.js';
import type { HardwareView, NodeList, NodeView } from '../../api/views.js';
import { need, enc, splitPair, UsageError, type CliValues } from '../args.js';
import type { ApiClient } from '../client.js';
import { phaseColour, renderNodeDetail, renderNodeTable } from '../table.js';

/** The body of POST /nodes from `node add` / `discovered enroll` options. */
export function nodeBody(name: string, macs: string[], values: CliValues, command: string, defaults: { firmware?: string | undefined } = {}) {
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

export async function nodeCommand(client: ApiClient, sub: string | undefined, args: string[], values: CliValues): Promise<number> {
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
      const { nodes, counts } = await client.request<NodeList>('GET', `/nodes?${query}`);
      console.log(renderNodeTable(nodes));
      console.log(Object.entries(counts).map(([p, n]) => `${p} ${n}`).join('  '));
      return 0;
    }
    case 'show': {
      const node = await client.request<NodeView>('GET', `/nodes/${enc(need(args[0], 'node show needs a node'))}`);
      console.log(values.json ? JSON.stringify(node, null, 2) : renderNodeDetail(node));
      return 0;
    }
    case 'hardware': {
      const view = await client.request<HardwareView>('GET', `/nodes/${enc(need(args[0], 'node hardware needs a node'))}/hardware`);
      if (values.json) console.log(JSON.stringify(view, null, 2));
      else console.log([`${view.node}: reported ${new Date(view.at).toISOString()} (${view.digest})`, ...describeHardware(view.hardware).map((l) => `  ${l}`)].join('\n'));
      return 0;
    }
    case 'kexec-clear': {
      const node = await client.request<NodeView>('GET', `/nodes/${enc(need(args[0], 'node kexec-clear needs a node'))}`);
      const { cleared } = await client.request<{ cleared: boolean }>('POST', `/agents/${enc(node.id)}/kexec/clear`);
      console.log(cleared ? `${node.name}: kexec failures cleared; its next hello says whether it can kexec` : `${node.name} had no failed kexecs`);
      return 0;
    }
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

async function setCommand(client: ApiClient, args: string[], values: CliValues): Promise<number> {
  const assignments = args.filter((a) => a.includes('='));
  let names = args.filter((a) => !a.includes('='));
  const patch = parseDesiredAssignments(assignments);
  if (values.selector) {
    const { nodes } = await client.request<NodeList>('GET', `/nodes?selector=${enc(values.selector as string)}`);
    names = [...names, ...nodes.map((n) => n.name)];
  }
  if (names.length === 0) throw new UsageError('node set needs at least one node (or --selector)');
  for (const name of names) await client.request('PATCH', `/nodes/${enc(name)}/desired`, patch);
  console.log(`set ${assignments.join(' ')} on ${names.length} node${names.length === 1 ? '' : 's'}`);
  if (!values.wait) return 0;
  return waitForConvergence(client, names, Number(values.timeout ?? 900));
}

/**
 * What the step's own facet was observed to be since the step started (a disk write's bytes, a
 * drain under way), so a long step shows it moving; empty when nothing was observed yet.
 */
function stepProgress(v: NodeView): string {
  if (!v.step || v.step.waiting) return '';
  const seen = v.observed[v.step.name.split('.', 1)[0]!];
  return seen && seen.at >= v.step.startedAt ? `: ${seen.value}${seen.detail ? ` ${seen.detail}` : ''}` : '';
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
      const line = v.phase === 'converging' ? `${v.step?.waiting ? `waiting (${v.step.waiting}) for ` : ''}${v.step?.name ?? 'planning'}${stepProgress(v)}` : v.phase;
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
