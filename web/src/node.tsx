// One node: desired against observed facet by facet, its plan drawn as a path to the target, the
// boot stages of its latest boot, its event timeline, and the actions on it.
import { Fragment } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api } from './api.js';
import type { Cluster } from './cluster.js';
import { profileHref, useCluster, useRead, useRereadOn } from './hooks.js';
import { nodeState } from './state.js';
import type { PlanView, NodeView, EventView, StepStatus, NodeConfigView } from '../../src/api/views.js';
import type { Hardware } from '../../src/contracts/hardware.js';
import { FACETS } from './types.js';
import { DesiredForm, desiredAction, describeError, nodeAction, type ActionSpec } from './actions.js';

/** The stages a network boot goes through, as the boot and run facets observe them. */
const BOOT_STAGES: { facet: 'boot' | 'run'; value: string }[] = [
  { facet: 'boot', value: 'armed' },
  { facet: 'boot', value: 'dhcp' },
  { facet: 'boot', value: 'loader' },
  { facet: 'boot', value: 'kernel' },
  { facet: 'run', value: 'ready' },
];
/** A boot the running OS started by kexec: no firmware stage between the arming and the hello. */
const KEXEC_STAGES: { facet: 'boot' | 'run'; value: string }[] = [
  { facet: 'boot', value: 'armed' },
  { facet: 'boot', value: 'kexec' },
  { facet: 'run', value: 'ready' },
];
const TIMELINE_SHOWN = 300;
const PLAN_REFRESH_MS = 300;

export function NodePage({ cluster, id, onAction }: { cluster: Cluster; id: string; onAction: (a: ActionSpec) => void }) {
  useCluster(cluster);
  const node = cluster.nodes.get(id);
  const plan = usePlan(id, node);
  const events = useTimeline(cluster, id);
  if (!node) return <section class="node-view">{cluster.nodes.size === 0 ? 'Loading…' : `No node ${id}.`}</section>;
  const state = nodeState(node);
  return (
    <section class="node-view" data-node={node.name}>
      <h1>
        <a href="#/">Nodes</a> / {node.name} <span class={`badge state-${state}`} data-testid="node-state">{state}</span>
        {node.frozen && <span class="badge state-frozen">frozen</span>}
      </h1>
      {(node.reason || node.lastError) && (
        <p class="error reason" role="alert" data-testid="reason">
          {node.reason ?? node.lastError}
        </p>
      )}
      <div class="columns">
        <div>
          <h2>Desired and observed</h2>
          <FacetTable node={node} plan={plan.value} events={events.value} desirable={cluster.desirable.map((d) => d.facet)} />
          <h2>Actions</h2>
          <DesiredForm facets={cluster.desirable} nodes={[node]} onSubmit={(patch) => onAction(desiredAction(cluster, [node], patch))} />
          <div class="buttons">
            {node.frozen ? (
              <button type="button" onClick={() => onAction(nodeAction(cluster, [node], 'thaw'))}>
                Thaw
              </button>
            ) : (
              <button type="button" onClick={() => onAction(nodeAction(cluster, [node], 'freeze'))}>
                Freeze
              </button>
            )}
            <button type="button" disabled={node.phase !== 'failed'} onClick={() => onAction(nodeAction(cluster, [node], 'retry'))}>
              Retry
            </button>
          </div>
        </div>
        <div>
          <h2>Hardware</h2>
          <dl class="details">
            <dt>BMC</dt>
            <dd data-testid="bmc">{node.bmc}</dd>
            <dt>MACs</dt>
            <dd>{node.macs.join(', ')}</dd>
            <dt>arch / firmware</dt>
            <dd>
              {node.arch} / {node.firmware}
            </dd>
            {node.ipv4 && (
              <>
                <dt>IPv4</dt>
                <dd>{node.ipv4}</dd>
              </>
            )}
            <dt>labels</dt>
            <dd>
              {Object.entries(node.labels).map(([k, v]) => (
                <code key={k} class="label">
                  {k}={v}
                </code>
              ))}
            </dd>
            <dt>id</dt>
            <dd>
              <code>{node.id}</code>
            </dd>
            <ReportedHardware node={node} />
          </dl>
          <h2>Boot stages</h2>
          <BootStages events={events.value} />
          <h2>Configuration</h2>
          <NodeConfig cluster={cluster} id={node.id} />
        </div>
      </div>
      <h2>Plan</h2>
      {plan.error && <p class="error">{plan.error}</p>}
      {plan.value && <PlanPath plan={plan.value} />}
      <h2>Events</h2>
      {events.error && <p class="error">{events.error}</p>}
      <Timeline events={events.value} />
    </section>
  );
}

const GIB = 1024 ** 3;

/** What the node's agent reported of its machine at its last hello (the `hardware` facet's detail). */
function ReportedHardware({ node }: { node: NodeView }) {
  const detail = node.observed.hardware?.detail;
  if (!detail) {
    return (
      <>
        <dt>reported</dt>
        <dd class="muted">nothing yet: the agent reports at its hello</dd>
      </>
    );
  }
  // The appliance validated it before recording it; the page only reads it.
  const { firmware, system, cpu, memoryBytes, disks, nics } = JSON.parse(detail) as Hardware;
  return (
    <>
      <dt>system</dt>
      <dd data-testid="hw-system">
        {[system.vendor, system.product, system.serial && `serial ${system.serial}`].filter(Boolean).join(', ') || '?'}; booted {firmware.toUpperCase()}
      </dd>
      <dt>CPU</dt>
      <dd data-testid="hw-cpu">
        {cpu.model || '?'}: {cpu.sockets} socket{cpu.sockets === 1 ? '' : 's'}, {cpu.cores} cores, {cpu.threads} threads
      </dd>
      <dt>memory</dt>
      <dd data-testid="hw-memory">{(memoryBytes / GIB).toFixed(1)} GiB</dd>
      <dt>disks</dt>
      <dd data-testid="hw-disks">
        {disks.length === 0
          ? 'none'
          : disks.map((d) => (
              <div key={d.name}>
                <code>{d.name}</code> {(d.sizeBytes / GIB).toFixed(1)} GiB{d.model && ` ${d.model}`}
                {d.serial && <span class="muted"> serial {d.serial}</span>}
              </div>
            ))}
      </dd>
      <dt>NICs</dt>
      <dd data-testid="hw-nics">
        {nics.map((n) => (
          <div key={n.name}>
            <code>{n.name}</code> {n.mac}
            {n.speedMbps > 0 && ` ${n.speedMbps / 1000} Gb/s`}
            {n.driver && <span class="muted"> {n.driver}</span>}
          </div>
        ))}
      </dd>
    </>
  );
}

/** The profiles that reach the node, in merge order, and who set each value of its configuration. */
function NodeConfig({ cluster, id }: { cluster: Cluster; id: string }) {
  const read = useRead<NodeConfigView>(`/nodes/${encodeURIComponent(id)}/config`);
  // Any profile may come to reach the node; its own labels and overrides change what reaches it.
  useRereadOn(cluster, (e) => (e.kind === 'profile' && (e.nodeId === null || e.nodeId === id)) || (e.kind === 'node' && e.nodeId === id), read.reload);
  // A viewer may not read it (user-data may hold secrets): the API's words say so.
  if (read.error !== null && !read.value) return <p class="muted">{describeError(read.error)}</p>;
  if (!read.value) return <p class="muted">Reading…</p>;
  const { profiles, sources, overrides, digest } = read.value;
  const own = Object.keys(overrides);
  return (
    <div data-testid="node-config">
      <dl class="details">
        <dt>profiles</dt>
        <dd data-testid="node-profiles">
          {profiles.length === 0 ? (
            <span class="muted">none reaches it</span>
          ) : (
            <>
              {profiles.map((p, i) => (
                <Fragment key={p}>
                  {i > 0 && ', '}
                  <a href={profileHref(p)}>{p}</a>
                </Fragment>
              ))}
              <small class="muted"> (merge order: a later one wins)</small>
            </>
          )}
        </dd>
        <dt>own overrides</dt>
        <dd>{own.length > 0 ? own.join(', ') : <span class="muted">none</span>}</dd>
        <dt>digest</dt>
        <dd>
          <code title={digest}>{digest.slice(0, 12)}…</code>
        </dd>
      </dl>
      {Object.keys(sources).length > 0 && (
        <table class="config-sources">
          <thead>
            <tr>
              <th>value</th>
              <th>set by</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(sources).map(([key, source]) => (
              <tr key={key} data-key={key}>
                <td title={key}>
                  <code>{key}</code>
                </td>
                <td>{source.startsWith('profile:') ? <a href={profileHref(source.slice('profile:'.length))}>{source}</a> : source}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** The node's plan, re-read whenever the node changes, at most once every PLAN_REFRESH_MS. */
function usePlan(id: string, node: NodeView | undefined): { value: PlanView | null; error: string | null } {
  const [value, setValue] = useState<PlanView | null>(null);
  const [error, setError] = useState<string | null>(null);
  // A throttle, not a debounce: a node changing all the time must still have its plan re-read,
  // and an answer is kept unless a later request has already answered or the page left the node.
  const reads = useRef({ lastAt: 0, sent: 0, shown: 0, id });
  reads.current.id = id;
  useEffect(() => {
    const r = reads.current;
    const timer = setTimeout(() => {
      r.lastAt = performance.now();
      const seq = ++r.sent;
      const keep = () => r.id === id && seq > r.shown && ((r.shown = seq), true);
      api<PlanView>('GET', `/nodes/${encodeURIComponent(id)}/plan`)
        .then((plan) => keep() && (setValue(plan), setError(null)))
        .catch((err) => keep() && setError(describeError(err)));
    }, Math.max(0, r.lastAt + PLAN_REFRESH_MS - performance.now()));
    return () => clearTimeout(timer);
  }, [id, node]);
  return { value, error };
}

/** The node's events: the log read once, then the live stream's events for this node. */
function useTimeline(cluster: Cluster, id: string): { value: EventView[]; error: string | null } {
  const [value, setValue] = useState<EventView[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    let log: EventView[] = [];
    let loaded = false;
    const pending: EventView[] = [];
    const off = cluster.onEvents((events) => {
      const mine = events.filter((e) => e.nodeId === id);
      if (mine.length === 0) return;
      if (!loaded) pending.push(...mine);
      else setValue((log = [...log, ...mine]));
    });
    api<{ events: EventView[] }>('GET', `/events?node=${encodeURIComponent(id)}&limit=10000`)
      .then(({ events }) => {
        if (!live) return;
        const last = events.at(-1)?.rev ?? 0;
        log = [...events, ...pending.filter((e) => e.rev > last)];
        loaded = true;
        setValue(log);
      })
      .catch((err) => live && setError(err instanceof ApiError && err.status === 404 ? null : describeError(err)));
    return () => {
      live = false;
      off();
    };
  }, [cluster, id]);
  return { value, error };
}

function FacetTable({ node, plan, events, desirable }: { node: NodeView; plan: PlanView | null; events: EventView[]; desirable: string[] }) {
  // The standard four, then any other facet an operator can desire (a module's, e.g. config).
  const facets = [...FACETS, ...desirable.filter((f) => !(FACETS as readonly string[]).includes(f))];
  // Who asked for each desired value: the writer of the latest desired event of its facet.
  const desiredBy = new Map(events.filter((e) => e.kind === 'desired').map((e) => [e.facet, e.writer]));
  return (
    <table class="facets">
      <thead>
        <tr>
          <th>facet</th>
          <th>desired</th>
          <th>observed</th>
          <th>seen</th>
        </tr>
      </thead>
      <tbody>
        {facets.map((facet) => {
          const observation = node.observed[facet];
          const want = plan?.target[facet];
          // The engine's own judgement: the plan's start state against the values its target accepts.
          const differs = want !== undefined && plan !== null && !want.includes(plan.from[facet] ?? '');
          return (
            <tr key={facet} class={differs ? 'differs' : ''} data-facet={facet}>
              <th>{facet}</th>
              <td>
                {node.desired[facet] ?? <span class="muted">don't care</span>}
                {node.desired[facet] !== undefined && desiredBy.has(facet) && (
                  <small class="muted" data-testid={`desired-by-${facet}`}>
                    {' '}
                    by {desiredBy.get(facet)}
                  </small>
                )}
              </td>
              <td data-testid={`observed-${facet}`}>
                {observation?.value ?? <span class="muted">nothing yet</span>}
                {observation?.detail && <span class="muted"> ({observation.detail})</span>}
              </td>
              <td class="muted">{observation ? `${timeOf(observation.at)} by ${observation.source}` : ''}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

const STEP_GAP = 150;

/** The plan as a path: the observed state, each step (the current one marked), the target. */
function PlanPath({ plan }: { plan: PlanView }) {
  const describe = (values: Record<string, string>) => Object.entries(values).map(([f, v]) => `${f}=${v}`);
  const target = Object.entries(plan.target).map(([f, v]) => `${f}∈{${(v ?? []).join(',')}}`);
  const points = plan.steps.length + 2;
  const width = points * STEP_GAP;
  const x = (i: number) => STEP_GAP / 2 + i * STEP_GAP;
  return (
    <div class="plan" data-testid="plan">
      <p>
        {plan.steps.length === 0
          ? plan.reachable
            ? 'Nothing to do: the observed state matches the desired state'
            : 'No sequence of steps reaches the desired state'
          : `${plan.steps.length} step${plan.steps.length === 1 ? '' : 's'} to the desired state`}
        {plan.failures > 0 && `, ${plan.failures} failure${plan.failures === 1 ? '' : 's'} so far`}.
      </p>
      <div class="plan-scroll">
        <svg width={width} height={130} viewBox={`0 0 ${width} 130`} role="img" aria-label="plan">
          <line x1={x(0)} y1={40} x2={x(points - 1)} y2={40} class="path" />
          <StateBox cx={x(0)} lines={describe(plan.from)} title="observed" />
          {plan.steps.map((step, i) => {
            const current = i === 0 && step.step === plan.current?.name;
            return (
              <g key={i} class={`step ${step.kind}${current ? ' current' : ''}`}>
                <title>{step.explain}</title>
                <circle cx={x(i + 1)} cy={40} r={current ? 14 : 10} />
                <text x={x(i + 1)} y={75} text-anchor="middle">
                  {step.step}
                </text>
                <text x={x(i + 1)} y={92} text-anchor="middle" class="muted">
                  {current ? stepState(plan.current!) : step.kind}
                </text>
              </g>
            );
          })}
          <StateBox cx={x(points - 1)} lines={target.length > 0 ? target : ["don't care"]} title="target" />
        </svg>
      </div>
      <ol class="explain">
        {plan.steps.map((step, i) => (
          <li key={i} class={i === 0 && step.step === plan.current?.name ? 'current' : ''}>
            <b>{step.step}</b> — {step.explain}
          </li>
        ))}
      </ol>
    </div>
  );
}

function stepState(step: StepStatus): string {
  if (step.waiting === 'limit') return 'waiting for a slot';
  if (step.waiting === 'backoff') return `retry ${step.attempt} after backoff`;
  return step.attempt > 1 ? `under way, attempt ${step.attempt}` : 'under way';
}

function StateBox({ cx, lines, title }: { cx: number; lines: string[]; title: string }) {
  const height = 18 + lines.length * 14;
  return (
    <g class="state-box">
      <rect x={cx - 65} y={8} width={130} height={height} rx={6} />
      <text x={cx} y={22} text-anchor="middle" class="box-title">
        {title}
      </text>
      {lines.map((line, i) => (
        <text key={line} x={cx} y={36 + i * 14} text-anchor="middle">
          {line}
        </text>
      ))}
    </g>
  );
}

/** The stages of the latest network or kexec'd boot (since the last `boot=armed`), with when each was seen. */
function BootStages({ events }: { events: EventView[] }) {
  const observed = events.filter((e) => e.kind === 'observed' && (e.facet === 'boot' || e.facet === 'run'));
  let start = -1;
  for (let i = observed.length - 1; i >= 0; i--) {
    if (observed[i]!.facet === 'boot' && observed[i]!.new === 'armed') {
      start = i;
      break;
    }
  }
  if (start < 0) return <p class="muted">No network boot seen yet.</p>;
  const boot = observed.slice(start);
  const armedAt = boot[0]!.at;
  const stages = boot.some((e) => e.facet === 'boot' && e.new === 'kexec') ? KEXEC_STAGES : BOOT_STAGES;
  return (
    <ol class="boot-stages" data-testid="boot-stages">
      {stages.map(({ facet, value }) => {
        const seen = boot.find((e) => e.facet === facet && e.new === value);
        return (
          <li key={value} class={seen ? 'seen' : ''} data-stage={value}>
            <span>{facet === 'run' ? `run ${value}` : value}</span>
            <small>{seen ? `+${((seen.at - armedAt) / 1000).toFixed(1)} s` : 'not yet'}</small>
          </li>
        );
      })}
    </ol>
  );
}

function Timeline({ events }: { events: EventView[] }) {
  const shown = events.slice(-TIMELINE_SHOWN).reverse();
  return (
    <div class="timeline-wrap">
      {events.length > TIMELINE_SHOWN && <p class="muted">The latest {TIMELINE_SHOWN} of {events.length} events.</p>}
      <table class="timeline" data-testid="timeline">
        <thead>
          <tr>
            <th>rev</th>
            <th>time</th>
            <th>kind</th>
            <th>facet</th>
            <th>change</th>
            <th>detail</th>
            <th>by</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((e) => (
            <tr key={e.rev} class={`kind-${e.kind}`}>
              <td>{e.rev}</td>
              <td>{timeOf(e.at)}</td>
              <td>{e.kind}</td>
              <td>{e.facet}</td>
              <td>{e.kind === 'secret' ? 'BMC credential set' : e.kind === 'node' ? (e.new === null ? 'removed' : 'spec written') : `${e.old ?? '–'} → ${e.new ?? '–'}`}</td>
              <td class="muted">{e.detail ?? ''}</td>
              <td class="muted">{e.writer}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function timeOf(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour12: false }) + `.${String(ms % 1000).padStart(3, '0')}`;
}
