// Operator actions. Each one is described first (what it will change, on which nodes), runs only
// once confirmed, and reports every API error with the API's own words.
import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError, api, eachLimited, upload } from './api.js';
import type { Cluster } from './cluster.js';
import { formatBytes, shortDigest, someNames } from './format.js';
import type { ImageArchive } from './tar.js';
import type { DesirableFacet, DesiredPatchInput, DiscoveredView, ImageView, NodeInput, NodeView, ProfileView } from '../../src/api/views.js';

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
  /** How many calls `run` makes, for the progress line (or bytes, with `describeProgress`). */
  calls: number;
  /** The progress line for `done` of `calls`, when "N of M done" is not the right words. */
  describeProgress?: (done: number, running: boolean) => string;
}

/** An API error as the API said it: its title and detail, with the fields or lines at fault. */
export function describeError(err: unknown): string {
  if (!(err instanceof ApiError)) return String(err);
  const fields = err.errors.map((e) => [e.line !== undefined ? `line ${e.line}` : e.path, e.message].filter(Boolean).join(': ')).filter(Boolean);
  const said = err.title && err.title !== err.message ? `${err.title}: ${err.message}` : err.message;
  return [said, ...fields].join(' — ');
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

export function desiredAction(cluster: Cluster, nodes: NodeView[], patch: DesiredPatchInput): ActionSpec {
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

/** Sends a picked tar to `POST /images/upload?ref=`; `archive` is what the page read of it, if it could. */
export function uploadImageAction(file: File, ref: string, archive: ImageArchive | null, onDone: (ref: string | null) => void): ActionSpec {
  const m = archive?.manifest;
  const files = archive?.entries.filter((e) => e.name !== 'image.json') ?? [];
  const says = m && [typeof m.arch === 'string' ? m.arch : '', typeof m.digest === 'string' ? `digest ${shortDigest(m.digest)}` : ''].filter(Boolean).join(', ');
  return {
    title: `Upload image ${ref}`,
    changes: [
      `add image ${ref} to the image store, from ${file.name} (${formatBytes(file.size)})`,
      ...(says ? [`image.json says: ${says}`] : []),
      ...(files.length ? [`files: ${files.map((f) => `${f.name} ${formatBytes(f.size)}`).join(', ')}`] : []),
      'the appliance checks every file against image.json before it stores anything',
    ],
    confirmLabel: 'Upload',
    calls: file.size,
    describeProgress: (sent, running) => {
      const percent = file.size === 0 ? 100 : Math.floor((sent / file.size) * 100);
      const line = `sent ${formatBytes(sent)} of ${formatBytes(file.size)} (${percent}%)`;
      return running && sent >= file.size ? `${line}; the appliance is checking the files…` : line;
    },
    run: async (progress) => {
      try {
        // The progress line is the browser's own upload events, to the last byte.
        const { status, body } = await upload<ImageView>(`/images/upload?ref=${encodeURIComponent(ref)}`, file, 'application/x-tar', (sent) => progress(sent));
        onDone(ref);
        return {
          message: status === 201 ? `Uploaded ${body.ref}: ${formatBytes(body.size)}, ${body.digest}.` : `${body.ref} was already stored with this content; nothing changed.`,
          errors: [],
        };
      } catch (err) {
        onDone(null);
        throw err;
      }
    },
  };
}

/** `DELETE /images/:ref`; the API refuses (409) while a node's desired state names the image. */
export function removeImageAction(image: ImageView, wanting: string[], running: string[], onDone: () => void): ActionSpec {
  const count = (n: number) => `${n} node${n === 1 ? '' : 's'}`;
  return {
    title: `Remove image ${image.ref}`,
    changes: [
      `remove ${image.ref} (${formatBytes(image.size)}, ${shortDigest(image.digest)}) from the image store`,
      running.length > 0 ? `${count(running.length)} run it now (${someNames(running)}): they keep running, but cannot network-boot it again` : 'no node runs it now',
      ...(wanting.length > 0 ? [`${count(wanting.length)} want it (${someNames(wanting)}): the appliance refuses while they do`] : []),
    ],
    confirmLabel: 'Remove',
    calls: 1,
    run: async (progress) => {
      try {
        await api('DELETE', `/images/${encodeURIComponent(image.ref)}`);
        progress(1);
        return { message: `Removed ${image.ref}.`, errors: [] };
      } finally {
        onDone();
      }
    },
  };
}

/** `DELETE /profiles/:name`: the nodes it reaches lose what it set at their next configuration read. */
export function removeProfileAction(profile: ProfileView, onDone: () => void): ActionSpec {
  const n = profile.reaches.length;
  return {
    title: `Remove profile ${profile.name}`,
    changes: [
      `remove profile ${profile.name}`,
      n > 0
        ? `${n} node${n === 1 ? '' : 's'} it reaches (${someNames(profile.reaches)}) lose what it set; a node booted with it is observed config=stale, nothing reboots by itself`
        : 'it reaches no node now',
    ],
    confirmLabel: 'Remove',
    calls: 1,
    run: async (progress) => {
      await api('DELETE', `/profiles/${encodeURIComponent(profile.name)}`);
      progress(1);
      onDone();
      return { message: `Removed profile ${profile.name}.`, errors: [] };
    },
  };
}

const INLINE_PASSWORD = /(\/\/[^:/@\s]*):[^@/\s]*@/;

/** `POST /nodes` with a discovered machine's MAC; the discovered list drops it once it is a node. */
export function enrollAction(cluster: Cluster, machine: DiscoveredView, input: NodeInput, onDone: () => void): ActionSpec {
  const labels = Object.entries(input.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  const password = input.bmcPassword ? 'the password given' : INLINE_PASSWORD.test(input.bmc) ? 'the password in the URL' : undefined;
  return {
    title: `Enroll ${machine.mac} as node ${input.name}`,
    changes: [
      `add node ${input.name} with MAC ${input.macs.join(', ')}`,
      `BMC ${input.bmc.replace(INLINE_PASSWORD, '$1:***@')}, ${password ? `with ${password} (kept apart, never shown)` : 'no password'}`,
      `arch ${input.arch ?? 'x86_64'}, firmware ${input.firmware ?? 'auto'}${input.ipv4 ? `, address ${input.ipv4}` : ''}`,
      labels.length ? `labels ${labels.join(', ')}` : 'no labels',
      'no desired state yet: the engine does nothing to it until you set one',
    ],
    confirmLabel: 'Enroll',
    calls: 1,
    run: async (progress) => {
      try {
        const node = await api<NodeView>('POST', '/nodes', input);
        progress(1);
        cluster.accept(node);
        return { message: `Enrolled ${node.name}.`, errors: [] };
      } finally {
        onDone();
      }
    },
  };
}

export function dismissAction(machine: DiscoveredView, onDone: () => void): ActionSpec {
  return {
    title: `Dismiss ${machine.mac}`,
    changes: [`forget ${machine.mac}${machine.hostname ? ` (${machine.hostname})` : ''} as a discovered machine; it is listed again if it network-boots again`],
    confirmLabel: 'Dismiss',
    calls: 1,
    run: async (progress) => {
      try {
        await api('DELETE', `/discovered/${encodeURIComponent(machine.mac)}`);
        progress(1);
        return { message: `Dismissed ${machine.mac}.`, errors: [] };
      } finally {
        onDone();
      }
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
        {spec.describeProgress
          ? stage !== 'confirm' && (
              <p class="progress" data-testid="progress">
                <progress max={spec.calls} value={done} /> {spec.describeProgress(done, stage === 'running')}
              </p>
            )
          : stage === 'running' && (
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

type Choice = '' | 'clear' | 'set' | string;

/**
 * Desired state for one node or a selection, one field per facet the appliance says can be desired
 * (a choice of values, or free text for a pattern such as an image ref); only the facets changed are sent.
 */
export function DesiredForm({ facets, nodes, onSubmit }: { facets: DesirableFacet[]; nodes: NodeView[]; onSubmit: (patch: DesiredPatchInput) => void }) {
  const [choice, setChoice] = useState<Record<string, Choice>>({});
  const [text, setText] = useState<Record<string, string>>({});
  const patch: Record<string, string | null> = {};
  for (const f of facets) {
    const picked = choice[f.facet];
    if (!picked) continue;
    if (picked === 'clear') patch[f.facet] = null;
    else if ('values' in f) patch[f.facet] = picked;
    else if (text[f.facet]?.trim()) patch[f.facet] = text[f.facet]!.trim();
  }
  const empty = Object.keys(patch).length === 0;
  const pick = (facet: string, value: Choice) => setChoice({ ...choice, [facet]: value });
  return (
    <form
      class="desired-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (!empty) onSubmit(patch as DesiredPatchInput);
      }}
    >
      {facets.map((f) =>
        'values' in f ? (
          <label key={f.facet}>
            {f.facet}
            <select name={f.facet} value={choice[f.facet] ?? ''} onChange={(e) => pick(f.facet, e.currentTarget.value)}>
              <option value="">unchanged</option>
              {f.values.map((v) => (
                <option key={v} value={v}>
                  {v}
                </option>
              ))}
              <option value="clear">unset (don't care)</option>
            </select>
          </label>
        ) : (
          <Fragment key={f.facet}>
            <label>
              {f.facet}
              <select name={`${f.facet}-mode`} value={choice[f.facet] ?? ''} onChange={(e) => pick(f.facet, e.currentTarget.value)}>
                <option value="">unchanged</option>
                <option value="set">set to…</option>
                <option value="clear">unset (don't care)</option>
              </select>
            </label>
            {choice[f.facet] === 'set' && (
              <input name={f.facet} placeholder={f.describe} title={f.describe} value={text[f.facet] ?? ''} onInput={(e) => setText({ ...text, [f.facet]: e.currentTarget.value })} />
            )}
          </Fragment>
        ),
      )}
      <button type="submit" disabled={empty}>
        Set desired{nodes.length > 1 ? ` of ${nodes.length} nodes` : ''}…
      </button>
    </form>
  );
}
