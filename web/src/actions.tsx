// Operator actions. Each one is described first (what it will change, on which nodes), runs only
// once confirmed, and reports every API error with the API's own words.
import { useState } from 'preact/hooks';
import { ApiError, api, eachLimited } from './api.js';
import type { Cluster } from './cluster.js';
import type { DesiredPatch, NodeView } from './types.js';

export interface ActionOutcome {
  message: string;
  errors: string[];
}

export interface ActionSpec {
  title: string;
  /** What will change, one line each, shown before the operator confirms. */
  changes: string[];
  confirmLabel: string;
  run(progress: (done: number) => void): Promise<ActionOutcome>;
  /** How many calls `run` makes, for the progress line. */
  calls: number;
}

/** An API error as the API said it, with the fields or lines at fault. */
export function describeError(err: unknown): string {
  if (!(err instanceof ApiError)) return String(err);
  const fields = err.errors.map((e) => [e.line !== undefined ? `line ${e.line}` : e.path, e.message].filter(Boolean).join(': ')).filter(Boolean);
  return [err.message, ...fields].join(' — ');
}

function nodesPhrase(nodes: NodeView[]): string {
  if (nodes.length === 1) return `node ${nodes[0]!.name}`;
  const names = nodes.slice(0, 5).map((n) => n.name).join(', ');
  return `${nodes.length} nodes (${names}${nodes.length > 5 ? ', …' : ''})`;
}

/** Calls `path` for each node; nodes the API answered for are shown at once. */
async function perNode(cluster: Cluster, nodes: NodeView[], call: (node: NodeView) => Promise<NodeView>, verb: string, progress: (done: number) => void): Promise<ActionOutcome> {
  const results = await eachLimited(nodes, 8, call, progress);
  const errors: string[] = [];
  results.forEach((result, i) => {
    if (result.status === 'fulfilled') cluster.accept(result.value);
    else errors.push(`${nodes[i]!.name}: ${describeError(result.reason)}`);
  });
  const done = nodes.length - errors.length;
  return { message: `${verb} ${done} of ${nodes.length} node${nodes.length === 1 ? '' : 's'}.`, errors };
}

export function desiredAction(cluster: Cluster, nodes: NodeView[], patch: DesiredPatch): ActionSpec {
  const changes = Object.entries(patch).map(([facet, value]) => {
    const current = new Set(nodes.map((n) => n.desired[facet] ?? 'unset'));
    const from = current.size === 1 ? [...current][0] : `${current.size} different values`;
    return value === null ? `${facet}: ${from} → unset (don't care)` : `${facet}: ${from} → ${value}`;
  });
  return {
    title: `Set desired state of ${nodesPhrase(nodes)}`,
    changes,
    confirmLabel: 'Set desired state',
    calls: nodes.length,
    run: (progress) => perNode(cluster, nodes, (n) => api<NodeView>('PATCH', `/nodes/${encodeURIComponent(n.id)}/desired`, patch), 'Updated', progress),
  };
}

const NODE_VERBS = {
  freeze: { title: 'Freeze', change: 'the engine takes no step on them until thawed', done: 'Froze' },
  thaw: { title: 'Thaw', change: 'the engine resumes converging them', done: 'Thawed' },
  retry: { title: 'Retry', change: 'their failure count is reset and the engine tries their plan again', done: 'Retried' },
} as const;

export function nodeAction(cluster: Cluster, nodes: NodeView[], verb: keyof typeof NODE_VERBS): ActionSpec {
  const words = NODE_VERBS[verb];
  return {
    title: `${words.title} ${nodesPhrase(nodes)}`,
    changes: [words.change.replace('them', nodes.length === 1 ? 'it' : 'them').replace('their', nodes.length === 1 ? 'its' : 'their')],
    confirmLabel: words.title,
    calls: nodes.length,
    run: (progress) => perNode(cluster, nodes, (n) => api<NodeView>('POST', `/nodes/${encodeURIComponent(n.id)}/${verb}`), words.done, progress),
  };
}

export function applianceFreezeAction(cluster: Cluster, frozen: boolean): ActionSpec {
  return {
    title: frozen ? 'Freeze the whole appliance' : 'Thaw the whole appliance',
    changes: [frozen ? 'the engine takes no step on any node until thawed' : 'the engine resumes converging every node not frozen on its own'],
    confirmLabel: frozen ? 'Freeze all' : 'Thaw all',
    calls: 1,
    run: async (progress) => {
      const result = await api<{ frozen: boolean }>('POST', frozen ? '/freeze' : '/thaw');
      progress(1);
      cluster.setApplianceFrozen(result.frozen);
      return { message: result.frozen ? 'The appliance is frozen.' : 'The appliance is thawed.', errors: [] };
    },
  };
}

export function importAction(yaml: string, fileName: string): ActionSpec {
  const rows = yaml.split('\n').filter((l) => /^\s*-\s/.test(l)).length;
  return {
    title: `Import inventory ${fileName}`,
    changes: [`add the nodes of this file (${rows} list entr${rows === 1 ? 'y' : 'ies'}, ${yaml.length} bytes); all or none`, 'set the desired state of each row that has one'],
    confirmLabel: 'Import',
    calls: 1,
    run: async (progress) => {
      const result = await api<{ imported: number; nodes: { id: string; name: string }[] }>('POST', '/inventory', yaml);
      progress(1);
      const names = result.nodes.slice(0, 10).map((n) => n.name).join(', ');
      return { message: `Imported ${result.imported} node${result.imported === 1 ? '' : 's'}${names ? `: ${names}${result.nodes.length > 10 ? ', …' : ''}` : ''}.`, errors: [] };
    },
  };
}

export function ConfirmAction({ spec, onClose }: { spec: ActionSpec; onClose: () => void }) {
  const [stage, setStage] = useState<'confirm' | 'running' | 'done'>('confirm');
  const [done, setDone] = useState(0);
  const [outcome, setOutcome] = useState<ActionOutcome | null>(null);
  const run = async () => {
    setStage('running');
    try {
      setOutcome(await spec.run(setDone));
    } catch (err) {
      setOutcome({ message: 'The appliance refused.', errors: [describeError(err)] });
    }
    setStage('done');
  };
  return (
    <div class="modal" role="dialog" aria-modal="true" aria-label={spec.title}>
      <div class="dialog">
        <h2>{spec.title}</h2>
        <p>This will change:</p>
        <ul class="changes">
          {spec.changes.map((c) => (
            <li key={c}>{c}</li>
          ))}
        </ul>
        {stage === 'running' && (
          <p class="progress">
            {done} of {spec.calls} done…
          </p>
        )}
        {outcome && (
          <div class="outcome" data-testid="outcome">
            <p>{outcome.message}</p>
            {outcome.errors.length > 0 && (
              <ul class="error" role="alert">
                {outcome.errors.slice(0, 50).map((e, i) => (
                  <li key={i}>{e}</li>
                ))}
                {outcome.errors.length > 50 && <li>… and {outcome.errors.length - 50} more</li>}
              </ul>
            )}
          </div>
        )}
        <div class="buttons">
          {stage === 'confirm' && (
            <button type="button" class="primary" onClick={run}>
              {spec.confirmLabel}
            </button>
          )}
          <button type="button" onClick={onClose} disabled={stage === 'running'}>
            {stage === 'done' ? 'Close' : 'Cancel'}
          </button>
        </div>
      </div>
    </div>
  );
}

type Choice = '' | 'clear' | string;
const CHOICES: Record<'power' | 'boot' | 'run', string[]> = { power: ['on', 'off'], boot: ['network', 'disk'], run: ['ready'] };

/** Desired power, boot, run and image for one node or a selection; only the facets changed are sent. */
export function DesiredForm({ nodes, onSubmit }: { nodes: NodeView[]; onSubmit: (patch: DesiredPatch) => void }) {
  const [choice, setChoice] = useState<Record<string, Choice>>({});
  const [image, setImage] = useState('');
  const patch: Record<string, string | null> = {};
  for (const facet of Object.keys(CHOICES)) if (choice[facet]) patch[facet] = choice[facet] === 'clear' ? null : choice[facet]!;
  if (choice.image === 'clear') patch.image = null;
  if (choice.image === 'set' && image.trim()) patch.image = image.trim();
  const empty = Object.keys(patch).length === 0;
  const pick = (facet: string, value: Choice) => setChoice({ ...choice, [facet]: value });
  return (
    <form
      class="desired-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (!empty) onSubmit(patch as DesiredPatch);
      }}
    >
      {(Object.keys(CHOICES) as (keyof typeof CHOICES)[]).map((facet) => (
        <label key={facet}>
          {facet}
          <select name={facet} value={choice[facet] ?? ''} onChange={(e) => pick(facet, e.currentTarget.value)}>
            <option value="">unchanged</option>
            {CHOICES[facet].map((v) => (
              <option key={v} value={v}>
                {v}
              </option>
            ))}
            <option value="clear">unset (don't care)</option>
          </select>
        </label>
      ))}
      <label>
        image
        <select name="image-mode" value={choice.image ?? ''} onChange={(e) => pick('image', e.currentTarget.value)}>
          <option value="">unchanged</option>
          <option value="set">set to…</option>
          <option value="clear">unset (don't care)</option>
        </select>
      </label>
      {choice.image === 'set' && <input name="image" placeholder="name@version, e.g. compute@2" value={image} onInput={(e) => setImage(e.currentTarget.value)} />}
      <button type="submit" disabled={empty}>
        Set desired{nodes.length > 1 ? ` of ${nodes.length} nodes` : ''}…
      </button>
    </form>
  );
}
