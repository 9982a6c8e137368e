import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterState, ConflictError } from './cluster-state.js';
import { SqliteStore } from './sqlite-store.js';
import type { NodeSpec } from '../domain/node.js';
import { StoreUnavailableError, type FeedBatch, type ShoalEvent, type StateStore } from './store.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function dbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-store-'));
  dirs.push(dir);
  return join(dir, 'shoal.db');
}

function newStore(): SqliteStore {
  const path = dbPath();
  return new SqliteStore(path, { keyFile: `${path}.key` });
}

const spec = (name: string, mac: string): NodeSpec => ({ name, macs: [mac], bmc: { scheme: 'ipmi', host: '127.0.0.1', port: 623, username: 'admin' }, arch: 'x86_64', firmware: 'bios', labels: { rack: 'r1' } });

describe('cluster state on SQLite', () => {
  it('shows in the event log every observation already applied in memory, without waiting for the group commit', async () => {
    const store = newStore();
    const state = await ClusterState.open(store);
    const [a] = await state.addNodes([{ spec: spec('a', '52:54:00:00:00:01') }], 'op');
    state.observe(a!.id, 'run', 'ready', 'agent');
    expect(state.observed(a!.id).run?.value).toBe('ready');
    const events = await state.events({ nodeId: a!.id });
    expect(events.at(-1)).toMatchObject({ kind: 'observed', facet: 'run', new: 'ready' });
    await store.close();
  });

  it('logs every change with old and new value and a monotonic revision, never the secret', async () => {
    const store = newStore();
    const state = await ClusterState.open(store);
    const [a] = await state.addNodes([{ spec: spec('a', '52:54:00:00:00:01'), bmcPassword: 'hunter2' }], 'op');
    state.observe(a!.id, 'power', 'off', 'ipmi');
    state.observe(a!.id, 'power', 'off', 'ipmi'); // not news: no event
    state.observe(a!.id, 'power', 'on', 'ipmi');
    await state.flush();
    const events = await state.events({});
    expect(events.map((e) => e.rev)).toEqual([1, 2, 3, 4]);
    expect(events.map((e) => [e.kind, e.facet, e.old, e.new, e.writer])).toEqual([
      ['node', 'spec', null, JSON.stringify(spec('a', '52:54:00:00:00:01')), 'op'],
      ['secret', 'bmc', null, '(set)', 'op'],
      ['observed', 'power', null, 'off', 'ipmi'],
      ['observed', 'power', 'off', 'on', 'ipmi'],
    ]);
    expect(JSON.stringify(events)).not.toContain('hunter2');
    await store.close();
  });

  it('enrolls a batch all together or not at all', async () => {
    const store = newStore();
    const state = await ClusterState.open(store);
    await state.addNodes([{ spec: spec('a', '52:54:00:00:00:01') }], 'op');
    await expect(state.addNodes([{ spec: spec('b', '52:54:00:00:00:02') }, { spec: spec('c', '52:54:00:00:00:01') }], 'op')).rejects.toThrow(ConflictError);
    expect(state.list().map((n) => n.name)).toEqual(['a']);
    await state.removeNode(state.resolve('a').id, 'op');
    expect(state.size).toBe(0);
    await store.close();
  });
});

/** A SQLite store the test can take out of reach: while `down`, every commit fails as an unreachable server's would (a mock in a unit test; test/postgres-restart.test.ts restarts a real server). */
function outageStore(): { store: StateStore; inner: SqliteStore; setDown: (down: boolean) => void } {
  const inner = newStore();
  let down = false;
  const store: StateStore = {
    load: () => inner.load(),
    commit: async (changes) => {
      if (down) throw new StoreUnavailableError('the test database cannot be reached: connect ECONNREFUSED');
      return inner.commit(changes);
    },
    events: (query) => inner.events(query),
    close: () => inner.close(),
  };
  return { store, inner, setDown: (value) => (down = value) };
}

describe('cluster state while its store cannot be reached', () => {
  it('keeps what modules observe, refuses to wait on a flush, and commits what it kept in order once the store answers', async () => {
    const { store, inner, setDown } = outageStore();
    const state = await ClusterState.open(store);
    const [a] = await state.addNodes([{ spec: spec('a', '52:54:00:00:00:01') }], 'op');
    state.observe(a!.id, 'power', 'on', 'ipmi');
    await state.flush();
    const news: Array<string | undefined> = [];
    state.on('store', (err) => news.push(err?.message));
    const lost = new Promise((resolve) => state.once('store', resolve));

    setDown(true);
    state.observe(a!.id, 'power', 'off', 'ipmi');
    state.observe(a!.id, 'run', 'off', 'implied');
    await lost;
    expect(state.storeUnavailable?.message).toMatch(/cannot be reached/);
    await expect(state.flush()).rejects.toBeInstanceOf(StoreUnavailableError);
    // Memory goes on, and so does what modules see.
    state.observe(a!.id, 'power', 'on', 'ipmi');
    expect(state.observed(a!.id).power?.value).toBe('on');

    const back = new Promise((resolve) => state.once('store', resolve));
    setDown(false);
    await back;
    expect(state.storeUnavailable).toBeUndefined();
    expect(news).toEqual(['the test database cannot be reached: connect ECONNREFUSED', undefined]);
    const observed = (await inner.events({})).filter((e) => e.kind === 'observed').map((e) => `${e.facet}=${e.new}`);
    expect(observed).toEqual(['power=on', 'power=off', 'run=off', 'power=on']);
    expect(state.revision).toBe((await inner.events({})).at(-1)!.rev);
    await state.close();
    await store.close();
  });
});

/**
 * A store whose feed the test drives: the log is a SQLite file, "another appliance" commits to it
 * directly, and the test hands the feed's batches over itself (a mock in a unit test of the code
 * above it; test/postgres-feed.test.ts runs the real feed).
 */
function drivenFeed(): { store: StateStore; other: SqliteStore; deliver: (events: ShoalEvent[]) => Promise<void> } {
  const other = newStore();
  let onBatch: ((batch: FeedBatch) => Promise<void>) | undefined;
  const store: StateStore = {
    load: () => other.load(),
    commit: (changes) => other.commit(changes),
    events: (query) => other.events(query),
    close: () => other.close(),
    follow: async (_afterRev, handler) => {
      onBatch = handler;
      return { close: async () => undefined };
    },
  };
  return { store, other, deliver: (events) => onBatch!({ events, values: new Map() }) };
}

const silent = { info: () => undefined, warn: () => undefined };

describe('cluster state following a feed', () => {
  it('applies an event from the feed once: delivered again, or written by this appliance, it changes nothing more', async () => {
    const { store, other, deliver } = drivenFeed();
    const state = await ClusterState.open(store, { follow: { log: silent } });
    const nodeEvents: string[] = [];
    const streamed: number[] = [];
    state.on('node', (id) => nodeEvents.push(id));
    state.on('events', (events) => streamed.push(...events.map((e) => e.rev)));

    const added = await other.commit([{ nodeId: 'id-a', kind: 'node', facet: 'spec', old: null, value: JSON.stringify(spec('a', '52:54:00:00:00:01')), writer: 'elsewhere' }]);
    await deliver(added);
    expect(state.resolve('a').id).toBe('id-a');
    expect(nodeEvents).toEqual(['id-a']);
    await deliver(added);
    expect(nodeEvents).toEqual(['id-a']);
    expect(streamed).toEqual([1]);

    // Its own write changed memory (and told listeners) before it committed; from the feed it is only news for the stream.
    await state.setDesired('id-a', { power: 'on' }, 'op');
    expect(nodeEvents).toEqual(['id-a', 'id-a']);
    expect(streamed).toEqual([1]);
    await deliver(await other.events({ afterRev: 1 }));
    expect(nodeEvents).toEqual(['id-a', 'id-a']);
    expect(streamed).toEqual([1, 2]);
    expect(state.desired('id-a')).toEqual({ power: 'on' });
    expect(state.revision).toBe(2);
    await state.close();
    await store.close();
  });

  it('keeps its own change to a fact over an older event from elsewhere to the same fact, as the log ends', async () => {
    const { store, other, deliver } = drivenFeed();
    await other.commit([{ nodeId: 'id-a', kind: 'node', facet: 'spec', old: null, value: JSON.stringify(spec('a', '52:54:00:00:00:01')), writer: 'elsewhere' }]);
    const state = await ClusterState.open(store, { follow: { log: silent } });
    // Elsewhere wishes power on (revision 2), then this appliance wishes it off (3), before the feed brings 2.
    await other.commit([{ nodeId: 'id-a', kind: 'desired', facet: 'power', old: null, value: 'on', writer: 'elsewhere' }]);
    await state.setDesired('id-a', { power: 'off' }, 'op');
    await deliver(await other.events({ afterRev: 1 }));
    expect((await other.load()).facts.find((f) => f.kind === 'desired')?.value).toBe('off');
    expect(state.desired('id-a')).toEqual({ power: 'off' });
    // Once the feed has passed its own change, the next event from elsewhere applies again.
    await deliver(await other.commit([{ nodeId: 'id-a', kind: 'desired', facet: 'power', old: 'off', value: 'on', writer: 'elsewhere' }]));
    expect(state.desired('id-a')).toEqual({ power: 'on' });
    await state.close();
    await store.close();
  });
});
