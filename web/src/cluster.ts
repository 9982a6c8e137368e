// The cluster as the page sees it, kept live from the event stream.
//
// Events carry the new value of one facet, so desired and observed state are patched from them at
// once. Phases are computed by the engine, so nodes touched by events are re-read from the API in
// batches (every FLUSH_MS): one by one when few changed, the whole list when many did. Whatever
// changed is shown at the next animation frame, once per frame however many events arrived.
import { ApiError, api, eachLimited, problemOf, storedToken } from './api.js';
import type { DesirableFacet, DesirableFacetList, NodeList, NodeView, EventView } from '../../src/api/views.js';

const FLUSH_MS = 250;
/** Above this many touched nodes, one list read is cheaper than reading them one by one. */
const WHOLE_LIST_ABOVE = 100;
const WHOLE_LIST_MIN_GAP_MS = 500;
/** Phases also change without an event (a step confirmed by re-planning): re-read everything now and then. */
const SAFETY_REFRESH_MS = 30_000;
const RECONNECT_MS = 1_000;
const STREAM_SLICE_MS = 8;
const byName = new Intl.Collator(undefined, { numeric: true }).compare;

export type StreamStatus = 'connecting' | 'live' | 'reconnecting';

export class Cluster {
  readonly nodes = new Map<string, NodeView>();
  /** Node ids sorted by name: the order of the grid. */
  order: string[] = [];
  /** Bumped once per animation frame in which anything changed; views re-derive from it. */
  version = 0;
  stream: StreamStatus = 'connecting';
  /** Unknown until an event or an action says so: the API has no read of the appliance-wide freeze. */
  applianceFrozen: boolean | null = null;
  /** Revision of the last event received; the stream resumes after it. */
  lastRev = 0;
  /** The facets an operator can desire on this appliance (standard ones and modules'), with what each accepts. */
  desirable: DesirableFacet[] = [];

  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(events: EventView[]) => void>();
  private readonly dirty = new Set<string>();
  private wholeListDirty = false;
  /** Events received while snapshots are being read, replayed over each snapshot when it lands. */
  private recent: EventView[] = [];
  private readsInFlight = 0;
  private wholeListReading = false;
  private wholeListNotBefore = 0;
  private frameRequested = false;
  private orderStale = false;
  private readonly stop = new AbortController();
  private readonly timers: ReturnType<typeof setInterval>[] = [];

  /** Reads every node, then follows the event stream from the list's revision. */
  async start(): Promise<void> {
    this.desirable = (await api<DesirableFacetList>('GET', '/desired-facets')).facets;
    await this.readWholeList();
    void this.follow();
    this.timers.push(setInterval(() => void this.flush(), FLUSH_MS));
    this.timers.push(
      setInterval(() => {
        this.wholeListDirty = true;
      }, SAFETY_REFRESH_MS),
    );
  }

  close(): void {
    this.stop.abort();
    for (const timer of this.timers) clearInterval(timer);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onEvents(listener: (events: EventView[]) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Takes a node as an action's response returned it, so the page shows it before the next event. */
  accept(node: NodeView): void {
    this.store(node);
    this.changed();
  }

  setApplianceFrozen(frozen: boolean): void {
    this.applianceFrozen = frozen;
    this.wholeListDirty = true;
    this.changed();
  }

  private async follow(): Promise<void> {
    while (!this.stop.signal.aborted) {
      try {
        const res = await fetch('/api/v1/events/stream', {
          headers: { authorization: `Bearer ${storedToken() ?? ''}`, 'last-event-id': String(this.lastRev) },
          signal: this.stop.signal,
        });
        if (res.status === 401) {
          await problemOf(res);
          return;
        }
        if (!res.ok || !res.body) throw await problemOf(res);
        // Resuming after lastRev replays what was missed, and those events mark their nodes for a read.
        this.setStream('live');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffered = '';
        let sliceStarted = performance.now();
        for (;;) {
          // Chunks already received resolve as microtasks, so a burst would never let a frame
          // paint: give the browser a turn whenever the stream has held the main thread a while.
          if (performance.now() - sliceStarted > STREAM_SLICE_MS) {
            await new Promise((resolve) => setTimeout(resolve, 0));
            sliceStarted = performance.now();
          }
          const { value, done } = await reader.read();
          if (done) break;
          const blocks = (buffered + value).split('\n\n');
          buffered = blocks.pop() ?? '';
          const events: EventView[] = [];
          for (const block of blocks) {
            for (const line of block.split('\n')) if (line.startsWith('data: ')) events.push(JSON.parse(line.slice(6)) as EventView);
          }
          if (events.length > 0) this.receive(events);
        }
      } catch (err) {
        if (this.stop.signal.aborted) return;
        if (err instanceof ApiError) console.warn(`event stream: ${err.message}`);
      }
      this.setStream('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  private receive(events: EventView[]): void {
    for (const event of events) {
      this.lastRev = event.rev;
      this.apply(event);
      if (event.nodeId !== null) this.dirty.add(event.nodeId);
    }
    if (this.readsInFlight > 0) for (const event of events) this.recent.push(event);
    for (const listener of this.eventListeners) listener(events);
    this.changed();
  }

  /** Patches the node an event is about; phases wait for the next read. */
  private apply(event: EventView): void {
    if (event.nodeId === null) {
      if (event.kind === 'appliance' && event.facet === 'freeze') {
        this.applianceFrozen = event.new === 'true';
        this.wholeListDirty = true;
      }
      return;
    }
    const node = this.nodes.get(event.nodeId);
    if (event.kind === 'node' && event.facet === 'spec' && event.new === null) {
      if (node) this.remove(event.nodeId);
      return;
    }
    // A node added since the last read appears when it is read (its view needs the engine's phase).
    if (!node) return;
    switch (event.kind) {
      case 'observed': {
        const observed = { ...node.observed };
        if (event.new === null) delete observed[event.facet];
        else observed[event.facet] = { value: event.new, ...(event.detail ? { detail: event.detail } : {}), at: event.at, source: event.writer };
        this.store({ ...node, observed });
        break;
      }
      case 'desired': {
        const desired = { ...node.desired };
        if (event.new === null) delete desired[event.facet];
        else desired[event.facet] = event.new;
        this.store({ ...node, desired });
        break;
      }
      case 'engine':
        if (event.facet === 'frozen') this.store({ ...node, frozen: event.new === 'true' });
        if (event.facet === 'hold') {
          const { reason: _held, ...rest } = node;
          this.store(event.new === null ? rest : { ...rest, reason: event.new });
        }
        break;
      default:
        break;
    }
  }

  private async flush(): Promise<void> {
    if (this.wholeListDirty || this.dirty.size > WHOLE_LIST_ABOVE) {
      if (this.wholeListReading || Date.now() < this.wholeListNotBefore) return;
      this.wholeListDirty = false;
      this.dirty.clear();
      await this.readWholeList().catch((err: Error) => console.warn(`node list: ${err.message}`));
      return;
    }
    if (this.dirty.size === 0) return;
    const ids = [...this.dirty];
    this.dirty.clear();
    await eachLimited(ids, 6, (id) => this.readNode(id));
  }

  private async readWholeList(): Promise<void> {
    const started = performance.now();
    this.wholeListReading = true;
    const replay = this.beginRead();
    try {
      const list = await api<NodeList>('GET', '/nodes');
      const seen = new Set<string>();
      for (const node of list.nodes) {
        seen.add(node.id);
        this.store(node);
      }
      for (const id of [...this.nodes.keys()]) if (!seen.has(id)) this.remove(id);
      if (this.lastRev === 0) this.lastRev = list.revision;
      // The list is as of its revision: only events after it are newer than the snapshot.
      replay((event) => event.rev > list.revision);
      this.changed();
    } finally {
      this.endRead();
      this.wholeListReading = false;
      // A big list costs the appliance too: leave it idle at least as long as the read took.
      this.wholeListNotBefore = Date.now() + Math.max(WHOLE_LIST_MIN_GAP_MS, performance.now() - started);
    }
  }

  private async readNode(id: string): Promise<void> {
    const replay = this.beginRead();
    try {
      this.store(await api<NodeView>('GET', `/nodes/${encodeURIComponent(id)}`));
      replay((event) => event.nodeId === id);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.remove(id);
      else throw err;
    } finally {
      this.endRead();
      this.changed();
    }
  }

  /** A snapshot may predate events already applied: the returned function replays those over it. */
  private beginRead(): (which: (event: EventView) => boolean) => void {
    const after = this.lastRev;
    this.readsInFlight++;
    return (which) => {
      for (const event of this.recent) if (event.rev > after && which(event)) this.apply(event);
    };
  }

  private endRead(): void {
    if (--this.readsInFlight === 0) this.recent = [];
  }

  private store(node: NodeView): void {
    if (!this.nodes.has(node.id) || this.nodes.get(node.id)!.name !== node.name) this.orderStale = true;
    this.nodes.set(node.id, node);
  }

  private remove(id: string): void {
    this.nodes.delete(id);
    this.orderStale = true;
  }

  private setStream(status: StreamStatus): void {
    if (this.stream === status) return;
    this.stream = status;
    this.changed();
  }

  private changed(): void {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      if (this.orderStale) {
        this.orderStale = false;
        this.order = [...this.nodes.values()].sort((a, b) => byName(a.name, b.name)).map((n) => n.id);
      }
      this.version++;
      for (const listener of this.listeners) listener();
    });
  }
}
