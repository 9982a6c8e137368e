// `shoal rollout …`: change a group of nodes a few at a time, follow it from the event stream
// until it is done, and list, show, pause, resume or cancel rollouts.
import { parseDesiredAssignments } from '../../domain/state.js';
import type { RolloutList, RolloutView } from '../../api/views.js';
import { need, enc, UsageError, type CliValues } from '../args.js';
import type { ApiClient } from '../client.js';
import { formatColumns, phaseColour } from '../table.js';

/** A rollout's or its node's state, coloured as the node phase it resembles. */
const ROLLOUT_PHASES: Record<string, string> = { done: 'converged', 'in-progress': 'converging', running: 'converging', failed: 'failed', paused: 'frozen', cancelled: 'frozen' };
const rolloutPhase = (state: string) => ROLLOUT_PHASES[state] ?? '';
const rolloutColour = (state: string, text = state) => phaseColour(rolloutPhase(state), text);
const describeChange = (desired: RolloutView['desired']) =>
  Object.entries(desired)
    .map(([k, v]) => `${k}=${v ?? '-'}`)
    .join(' ');

export async function rolloutCommand(client: ApiClient, sub: string | undefined, args: string[], values: CliValues): Promise<number> {
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
      const { rollouts } = await client.request<RolloutList>('GET', '/rollouts');
      console.log(
        formatColumns(
          ['ROLLOUT', 'STATUS', 'DONE', 'FAILED', 'MAX', 'CHANGE', 'SELECTOR', 'CREATED (UTC)'],
          rollouts.map((r) => [r.id, r.status, `${r.counts.done}/${r.counts.total}`, String(r.counts.failed), String(r.limit), describeChange(r.desired), r.selector, r.createdAt.slice(0, 19).replace('T', ' ')]),
          { column: 1, phaseOf: rolloutPhase },
        ),
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
      console.log(formatColumns(['NODE', 'STATE', 'PHASE', 'REASON'], (r.nodes ?? []).map((n) => [n.name, n.state, n.phase, n.reason ?? '']), { column: 1, phaseOf: rolloutPhase }));
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
  const nodes = new Map<string, { state: string; reason: string | undefined }>((r.nodes ?? []).map((n) => [n.id, { state: n.state, reason: n.reason }]));
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
