// The cluster at a glance: one row per node, coloured by state, filtered, with a selection the
// actions apply to. Only the rows in view are in the DOM, so 10,000 nodes scroll like 50.
import type { ComponentChild } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Cluster } from './cluster.js';
import { useCluster, nodeHref } from './hooks.js';
import { imagesOf, matcher, nodeState, type Filter } from './state.js';
import type { NodeView } from '../../src/api/views.js';
import { NODE_STATES } from './types.js';
import { DesiredForm, desiredAction, nodeAction, type ActionSpec } from './actions.js';

const ROW_HEIGHT = 30;
/** Rows rendered above and below the visible ones, so a fast scroll shows no blank band. */
const OVERSCAN = 8;
const NETWORK_BOOT = ['armed', 'dhcp', 'loader', 'kernel'];

/** True when the node's observed value of `facet` does not yet satisfy its desired value. */
function facetDiffers(node: NodeView, facet: string): boolean {
  const want = node.desired[facet];
  if (want === undefined) return false;
  const seen = node.observed[facet]?.value;
  if (facet === 'boot' && want === 'network') return !NETWORK_BOOT.includes(seen ?? '');
  return seen !== want;
}

export function Grid({ cluster, filter, setFilter, onAction }: { cluster: Cluster; filter: Filter; setFilter: (f: Filter) => void; onAction: (a: ActionSpec) => void }) {
  const version = useCluster(cluster);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const match = useMemo(() => matcher(filter), [filter]);
  const rows = useMemo(() => {
    if (typeof match === 'string') return [];
    const out: NodeView[] = [];
    for (const id of cluster.order) {
      const node = cluster.nodes.get(id);
      if (node && match(node)) out.push(node);
    }
    return out;
  }, [version, match]);
  const images = useMemo(() => imagesOf(cluster.nodes.values()), [version]);
  const selection = rows.filter((n) => selected.has(n.id));
  const allSelected = rows.length > 0 && selection.length === rows.length;
  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };

  return (
    <section class="grid-view">
      <div class="filters">
        <input name="name" placeholder="name contains" value={filter.name} onInput={(e) => setFilter({ ...filter, name: e.currentTarget.value })} />
        <input name="selector" placeholder="labels, e.g. rack=r1,role!=login" value={filter.selector} onInput={(e) => setFilter({ ...filter, selector: e.currentTarget.value })} />
        <select name="state" value={filter.state} onChange={(e) => setFilter({ ...filter, state: e.currentTarget.value as Filter['state'] })}>
          <option value="">every state</option>
          {NODE_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <select name="image" value={filter.image} onChange={(e) => setFilter({ ...filter, image: e.currentTarget.value })}>
          <option value="">every image</option>
          {images.map((i) => (
            <option key={i} value={i}>
              {i}
            </option>
          ))}
        </select>
        <span class="shown" data-testid="shown">
          {rows.length} shown
        </span>
        {typeof match === 'string' && (
          <span class="error" role="alert">
            selector: {match}
          </span>
        )}
      </div>
      {selection.length > 0 && (
        <div class="selection-bar">
          <b>{selection.length} selected</b>
          <DesiredForm facets={cluster.desirable} nodes={selection} onSubmit={(patch) => onAction(desiredAction(cluster, selection, patch))} />
          <button type="button" onClick={() => onAction(nodeAction(cluster, selection, 'freeze'))}>
            Freeze
          </button>
          <button type="button" onClick={() => onAction(nodeAction(cluster, selection, 'thaw'))}>
            Thaw
          </button>
          <button type="button" disabled={!selection.some((n) => n.phase === 'failed')} onClick={() => onAction(nodeAction(cluster, selection.filter((n) => n.phase === 'failed'), 'retry'))}>
            Retry failed
          </button>
          <button type="button" class="quiet" onClick={() => setSelected(new Set())}>
            Clear selection
          </button>
        </div>
      )}
      <div class="row head">
        <span class="c-check">
          <input type="checkbox" aria-label="select every shown node" checked={allSelected} onChange={() => setSelected(allSelected ? new Set() : new Set(rows.map((n) => n.id)))} />
        </span>
        <span class="c-name">node</span>
        <span class="c-state">state</span>
        <span class="c-facet">power</span>
        <span class="c-facet">boot</span>
        <span class="c-facet">run</span>
        <span class="c-image">image</span>
        <span class="c-step">step</span>
        <span class="c-reason">reason</span>
      </div>
      <VirtualRows count={rows.length} rowHeight={ROW_HEIGHT} keyOf={(i) => rows[i]!.id} render={(i) => <NodeRow node={rows[i]!} selected={selected.has(rows[i]!.id)} onToggle={toggle} />} />
    </section>
  );
}

function NodeRow({ node, selected, onToggle }: { node: NodeView; selected: boolean; onToggle: (id: string) => void }) {
  const state = nodeState(node);
  const facet = (name: string) => {
    const seen = node.observed[name]?.value ?? '–';
    const want = node.desired[name];
    return facetDiffers(node, name) ? (
      <span class="diff" title={`observed ${seen}, desired ${want}`}>
        {seen} → {want}
      </span>
    ) : (
      seen
    );
  };
  return (
    <div class={`row state-${state}${selected ? ' selected' : ''}`} data-node={node.name} data-state={state}>
      <span class="c-check">
        <input type="checkbox" aria-label={`select ${node.name}`} checked={selected} onChange={() => onToggle(node.id)} />
      </span>
      <a class="c-name" href={nodeHref(node.id)}>
        {node.name}
      </a>
      <span class="c-state">
        <i class="dot" />
        {state}
      </span>
      <span class="c-facet">{facet('power')}</span>
      <span class="c-facet">{facet('boot')}</span>
      <span class="c-facet">{facet('run')}</span>
      <span class="c-image" data-image={node.observed.image?.value ?? ''}>
        {facet('image')}
        {node.observed.config?.value === 'stale' && (
          <span class="badge config-stale" title="its configuration (profiles, overrides) changed since it booted; desire config=current to reboot it with the new one">
            config stale
          </span>
        )}
      </span>
      <span class="c-step">{node.step ? `${node.step.name}${node.step.waiting ? ` (${node.step.waiting})` : ''}` : ''}</span>
      <span class="c-reason" title={node.reason ?? node.lastError ?? ''}>
        {node.reason ?? node.lastError ?? ''}
      </span>
    </div>
  );
}

/** A fixed-row-height window over `count` rows: only those in view (plus OVERSCAN) are rendered. */
function VirtualRows({ count, rowHeight, keyOf, render }: { count: number; rowHeight: number; keyOf: (i: number) => string; render: (i: number) => ComponentChild }) {
  const viewport = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  useEffect(() => {
    const el = viewport.current!;
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - OVERSCAN);
  const last = Math.min(count, Math.ceil((scrollTop + height) / rowHeight) + OVERSCAN);
  const visible: ComponentChild[] = [];
  for (let i = first; i < last; i++) {
    visible.push(
      <div key={keyOf(i)} class="slot" style={{ transform: `translateY(${i * rowHeight}px)`, height: `${rowHeight}px` }}>
        {render(i)}
      </div>,
    );
  }
  return (
    <div class="rows" ref={viewport} onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)} data-testid="rows">
      <div class="spacer" style={{ height: `${count * rowHeight}px` }}>
        {visible}
      </div>
    </div>
  );
}
