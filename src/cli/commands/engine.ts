// The engine's side of nodes: `shoal plan NODE` (the steps from observed to desired, explained),
// `retry NODE` (release a failed node) and `freeze`/`thaw` (one node, or the whole appliance).
import type { PlanView } from '../../api/views.js';
import { enc, need } from '../args.js';
import type { ApiClient } from '../client.js';

export async function planCommand(client: ApiClient, name: string): Promise<number> {
  const plan = await client.request<PlanView>('GET', `/nodes/${enc(name)}/plan`);
  const fmt = (m: Partial<Record<string, string | string[]>>) =>
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

export async function retryCommand(client: ApiClient, node: string | undefined): Promise<number> {
  await client.request('POST', `/nodes/${enc(need(node, 'retry needs a node'))}/retry`);
  console.log(`${node}: released with a fresh retry budget`);
  return 0;
}

export async function freezeCommand(client: ApiClient, action: 'freeze' | 'thaw', node: string | undefined): Promise<number> {
  await client.request('POST', node ? `/nodes/${enc(node)}/${action}` : `/${action}`);
  console.log(`${node ?? 'appliance'}: ${action === 'freeze' ? 'frozen (no new steps)' : 'thawed'}`);
  return 0;
}
