// The store contract (src/state/store.ts) as tests, registered once per backend
// (src/state/sqlite-store.test.ts, src/state/postgres-store.test.ts): whatever keeps the state, the
// cluster sees the same log, the same facts, the same revisions and the same handling of secrets
// and key files. It lives here, not in src/, because only tests use it (test/shipped-tree.test.ts).
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterState } from '../../src/state/cluster-state.js';
import { REDACTED, type Change, type FeedBatch, type StateStore } from '../../src/state/store.js';
import type { NodeSpec } from '../../src/domain/node.js';

/** One empty database of a backend; `open` can be called again after a close (a reopen). */
export interface StoreDatabase {
  open(options: { keyFile: string }): Promise<StateStore>;
}

export interface StoreBackend {
  name: string;
  /** Several appliances may write to one database: the store has a feed (`follow`). */
  shared: boolean;
  /** A new, empty database for one test. */
  database(): Promise<StoreDatabase>;
}

const spec = (name: string, mac: string): NodeSpec => ({ name, macs: [mac], bmc: { scheme: 'ipmi', host: '127.0.0.1', port: 623, username: 'admin' }, arch: 'x86_64', firmware: 'bios', labels: { rack: 'r1' } });

const change = (nodeId: string | null, kind: Change['kind'], facet: string, value: string | null, extra: Partial<Change> = {}): Change => ({
  nodeId,
  kind,
  facet,
  value,
  old: null,
  writer: 'test',
  ...extra,
});

const quiet = { info: () => undefined, warn: () => undefined };

/** Polls `check` until it holds; fails with `what` after `ms`. */
async function waitFor(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function storeContract(backend: StoreBackend): void {
  describe(`the store contract on ${backend.name}`, () => {
    const dirs: string[] = [];
    const openStores = new Set<StateStore>();
    afterEach(async () => {
      await Promise.all([...openStores].map((s) => s.close()));
      openStores.clear();
      dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
    });

    /** A fresh database and a key file path beside nothing else. */
    async function fresh(): Promise<{ db: StoreDatabase; keyFile: string; open: (keyFile?: string) => Promise<StateStore>; close: (s: StateStore) => Promise<void> }> {
      const dir = mkdtempSync(join(tmpdir(), 'shoal-contract-'));
      dirs.push(dir);
      const keyFile = join(dir, 'secret.key');
      const db = await backend.database();
      return {
        db,
        keyFile,
        open: async (file = keyFile) => {
          const store = await db.open({ keyFile: file });
          openStores.add(store);
          return store;
        },
        close: async (store) => {
          openStores.delete(store);
          await store.close();
        },
      };
    }

    it('starts empty at revision 0', async () => {
      const store = await (await fresh()).open();
      expect(await store.load()).toEqual({ facts: [], rev: 0 });
      expect(await store.events({})).toEqual([]);
      expect(await store.commit([])).toEqual([]);
    });

    it("numbers a batch's events on from the last revision, in order, with the writer, time and detail given", async () => {
      const store = await (await fresh()).open();
      const first = await store.commit([change('a', 'node', 'spec', '{"name":"a"}', { writer: 'op', at: 1000 }), change('a', 'desired', 'power', 'on', { writer: 'op', at: 1001 })]);
      const before = Date.now();
      const second = await store.commit([change('a', 'observed', 'boot', 'armed', { old: 'none', detail: 'compute@1', writer: 'pxe' })]);
      expect(first).toEqual([
        { rev: 1, at: 1000, nodeId: 'a', kind: 'node', facet: 'spec', old: null, new: '{"name":"a"}', detail: null, writer: 'op' },
        { rev: 2, at: 1001, nodeId: 'a', kind: 'desired', facet: 'power', old: null, new: 'on', detail: null, writer: 'op' },
      ]);
      expect(second).toEqual([{ rev: 3, at: expect.any(Number), nodeId: 'a', kind: 'observed', facet: 'boot', old: 'none', new: 'armed', detail: 'compute@1', writer: 'pxe' }]);
      expect(second[0]!.at).toBeGreaterThanOrEqual(before);
      expect(await store.events({})).toEqual([...first, ...second]);
    });

    it('loads the latest value of each fact, with its revision and writer; a null value removes the fact', async () => {
      const store = await (await fresh()).open();
      await store.commit([change('a', 'node', 'spec', '{}'), change('a', 'observed', 'power', 'off', { writer: 'ipmi', at: 5 }), change('a', 'desired', 'image', 'compute@1')]);
      await store.commit([change('a', 'observed', 'power', 'on', { old: 'off', writer: 'ipmi', at: 6, detail: 'polled' }), change('a', 'desired', 'image', null, { old: 'compute@1' })]);
      await store.commit([change(null, 'appliance', 'freeze', 'true', { at: 7 })]);
      const { facts, rev } = await store.load();
      expect(rev).toBe(6);
      expect(facts).toEqual([
        { nodeId: 'a', kind: 'node', facet: 'spec', value: '{}', detail: null, rev: 1, at: expect.any(Number), writer: 'test' },
        { nodeId: 'a', kind: 'observed', facet: 'power', value: 'on', detail: 'polled', rev: 4, at: 6, writer: 'ipmi' },
        { nodeId: null, kind: 'appliance', facet: 'freeze', value: 'true', detail: null, rev: 6, at: 7, writer: 'test' },
      ]);
    });

    it('drops every fact of a removed node, its secret too, and keeps the other nodes', async () => {
      const store = await (await fresh()).open();
      await store.commit([
        change('a', 'node', 'spec', '{}'),
        change('a', 'secret', 'bmc', 'pw-a'),
        change('a', 'desired', 'power', 'on'),
        change('a', 'observed', 'power', 'off'),
        change('a', 'engine', 'hold', 'failed'),
        change('b', 'node', 'spec', '{}'),
        change('b', 'observed', 'power', 'on'),
      ]);
      await store.commit([change('a', 'node', 'spec', null, { old: '{}' })]);
      expect((await store.load()).facts.map((f) => [f.nodeId, f.kind, f.facet, f.value])).toEqual([
        ['b', 'node', 'spec', '{}'],
        ['b', 'observed', 'power', 'on'],
      ]);
      // Enrolled again under the same id, the node does not get the removed node's password back.
      await store.commit([change('a', 'node', 'spec', '{}')]);
      expect((await store.load()).facts.filter((f) => f.nodeId === 'a' && f.kind === 'secret')).toEqual([]);
    });

    it('keeps BMC secrets out of the event log and gives them back at load', async () => {
      const store = await (await fresh()).open();
      await store.commit([change('a', 'node', 'spec', '{}'), change('a', 'secret', 'bmc', 'hunter2')]);
      const changed = await store.commit([change('a', 'secret', 'bmc', 'hunter3', { old: 'hunter2' })]);
      expect(changed.map((e) => [e.old, e.new])).toEqual([[REDACTED, REDACTED]]);
      expect((await store.load()).facts.find((f) => f.kind === 'secret')).toMatchObject({ nodeId: 'a', facet: 'bmc', value: 'hunter3' });
      await store.commit([change('a', 'secret', 'bmc', null, { old: 'hunter3' })]);
      const events = await store.events({});
      expect(events.filter((e) => e.kind === 'secret').map((e) => [e.old, e.new])).toEqual([
        [null, REDACTED],
        [REDACTED, REDACTED],
        [REDACTED, null],
      ]);
      expect(JSON.stringify(events)).not.toMatch(/hunter/);
      expect((await store.load()).facts.filter((f) => f.kind === 'secret')).toEqual([]);
    });

    it("keeps API users' token hashes out of the event log like secrets", async () => {
      const store = await (await fresh()).open();
      const hash = 'a'.repeat(64);
      await store.commit([change(null, 'user', 'alice', hash, { detail: '{"role":"admin"}' })]);
      expect((await store.load()).facts).toEqual([{ nodeId: null, kind: 'user', facet: 'alice', value: hash, detail: '{"role":"admin"}', rev: 1, at: expect.any(Number), writer: 'test' }]);
      await store.commit([change(null, 'user', 'alice', null, { old: hash })]);
      const events = await store.events({});
      expect(events.map((e) => [e.old, e.new])).toEqual([
        [null, REDACTED],
        [REDACTED, null],
      ]);
      expect(JSON.stringify(events)).not.toContain(hash);
      expect((await store.load()).facts).toEqual([]);
    });

    it('writes a batch all together or not at all', async () => {
      const store = await (await fresh()).open();
      await expect(store.commit([change('a', 'node', 'spec', '{}'), change('a', 'secret', 'bmc', 'pw'), change(null, 'secret', 'bmc', 'pw')])).rejects.toThrow(/a secret belongs to a node/);
      expect(await store.load()).toEqual({ facts: [], rev: 0 });
      expect(await store.events({})).toEqual([]);
      // The failed batch used no revision.
      expect((await store.commit([change('b', 'node', 'spec', '{}')]))[0]!.rev).toBe(1);
    });

    it('pages the log: events after a revision, at most a limit (1000 by default, 10,000 at most), of one node', async () => {
      const store = await (await fresh()).open();
      await store.commit([change('a', 'node', 'spec', '{}'), change('b', 'node', 'spec', '{}'), change('a', 'observed', 'power', 'on'), change('b', 'observed', 'power', 'on'), change('a', 'observed', 'run', 'ready')]);
      const revs = async (query: Parameters<StateStore['events']>[0]): Promise<number[]> => (await store.events(query)).map((e) => e.rev);
      expect(await revs({ afterRev: 2 })).toEqual([3, 4, 5]);
      expect(await revs({ limit: 2 })).toEqual([1, 2]);
      expect(await revs({ afterRev: 1, limit: 2 })).toEqual([2, 3]);
      expect(await revs({ nodeId: 'a' })).toEqual([1, 3, 5]);
      expect(await revs({ nodeId: 'a', afterRev: 1, limit: 1 })).toEqual([3]);
      expect(await revs({ afterRev: 5 })).toEqual([]);
      await store.commit(Array.from({ length: 10_001 }, (_, i) => change('c', 'observed', 'power', i % 2 ? 'on' : 'off')));
      expect(await revs({})).toHaveLength(1000);
      expect(await revs({ limit: 50_000 })).toHaveLength(10_000);
    });

    it('keeps the facts and the revision across a reopen, and numbers on from there', async () => {
      const t = await fresh();
      const store = await t.open();
      await store.commit([change('a', 'node', 'spec', '{}'), change('a', 'secret', 'bmc', 'pw'), change('a', 'observed', 'power', 'on', { detail: 'd' })]);
      const before = await store.load();
      await t.close(store);
      const reopened = await t.open();
      expect(await reopened.load()).toEqual(before);
      expect(before.rev).toBe(3);
      expect((await reopened.commit([change('a', 'observed', 'power', 'off', { old: 'on' })]))[0]!.rev).toBe(4);
    });

    it('keeps nodes, desired, observed, holds and freezes of the cluster state across a reopen', async () => {
      const t = await fresh();
      const store = await t.open();
      const state = await ClusterState.open(store);
      const [a] = await state.addNodes([{ spec: spec('a', '52:54:00:00:00:01'), bmcPassword: 'pw' }], 'test');
      await state.setDesired(a!.id, { power: 'on', image: 'compute@1' }, 'test');
      state.observe(a!.id, 'power', 'on', 'ipmi');
      state.observe(a!.id, 'boot', 'armed', 'pxe', 'compute@1');
      state.setHold(a!.id, 'power.on failed 6 times', 'engine');
      await state.setFrozen(null, true, 'test');
      await state.flush();
      const rev = state.revision;
      await t.close(store);

      const reopened = await ClusterState.open(await t.open());
      expect(reopened.revision).toBe(rev);
      expect(reopened.resolve('a')).toEqual(a);
      expect(reopened.byMac('52:54:00:00:00:01')?.id).toBe(a!.id);
      expect(reopened.desired(a!.id)).toEqual({ power: 'on', image: 'compute@1' });
      expect(reopened.observed(a!.id).power?.value).toBe('on');
      expect(reopened.observed(a!.id).boot).toMatchObject({ value: 'armed', detail: 'compute@1' });
      expect(reopened.hold(a!.id)).toBe('power.on failed 6 times');
      expect(reopened.bmcPassword(a!.id)).toBe('pw');
      expect(reopened.isFrozen()).toBe(true);
    });

    it(`has a feed ${backend.shared ? 'since other appliances may write to it' : 'not: one appliance owns it'}`, async () => {
      const store = await (await fresh()).open();
      expect(typeof store.follow).toBe(backend.shared ? 'function' : 'undefined');
    });

    it.skipIf(!backend.shared)('hands a follower every event after a revision once, in order, whoever wrote it, with the values the log leaves out', async () => {
      const t = await fresh();
      const [one, two] = [await t.open(), await t.open()];
      await one.commit([change('a', 'node', 'spec', '{}'), change('a', 'secret', 'bmc', 'pw')]);
      const batches: FeedBatch[] = [];
      const feed = await two.follow!(1, async (batch) => void batches.push(batch), { log: quiet });
      // Caught up when follow resolves: what was committed before it is handed over already.
      expect(batches.flatMap((b) => b.events.map((e) => e.rev))).toEqual([2]);
      expect(batches[0]!.values.get(2)).toBe('pw');
      const hash = 'b'.repeat(64);
      await one.commit([change('a', 'observed', 'power', 'on')]);
      await two.commit([change(null, 'user', 'alice', hash, { detail: '{"role":"viewer"}' })]);
      const last = await one.commit([change('a', 'secret', 'bmc', 'pw2', { old: 'pw' }), change('a', 'desired', 'power', 'on')]);
      const delivered = () => batches.flatMap((b) => b.events);
      await waitFor(() => delivered().some((e) => e.rev === last.at(-1)!.rev), `revision ${last.at(-1)!.rev} from the feed`);
      expect(delivered().map((e) => e.rev)).toEqual([2, 3, 4, 5, 6]);
      expect(delivered()).toEqual(await one.events({ afterRev: 1 }));
      const values = new Map(batches.flatMap((b) => [...b.values]));
      expect(values.get(4)).toBe(hash);
      expect(values.get(5)).toBe('pw2');
      expect([...values.keys()].sort()).toEqual([2, 4, 5]);
      await feed.close();
    });

    it.skipIf(!backend.shared)('keeps two cluster states on one database in step: nodes, desired, observed, secrets, holds and freezes, whichever writes', async () => {
      const t = await fresh();
      const a = await ClusterState.open(await t.open(), { follow: { log: quiet } });
      const b = await ClusterState.open(await t.open(), { follow: { log: quiet } });
      try {
        const [n] = await a.addNodes([{ spec: spec('n', '52:54:00:00:00:09'), bmcPassword: 'pw' }], 'op');
        await a.setDesired(n!.id, { power: 'on' }, 'op');
        a.observe(n!.id, 'power', 'off', 'ipmi');
        a.setHold(n!.id, 'power.on failed 6 times', 'engine');
        await a.setFrozen(null, true, 'op');
        await a.flush();
        await waitFor(() => b.revision === a.revision, `the second state at revision ${a.revision}`);
        expect(b.resolve('n')).toEqual(n);
        expect(b.byMac('52:54:00:00:00:09')?.id).toBe(n!.id);
        expect(b.desired(n!.id)).toEqual({ power: 'on' });
        expect(b.observed(n!.id).power).toMatchObject({ value: 'off', source: 'ipmi' });
        expect(b.bmcPassword(n!.id)).toBe('pw');
        expect(b.hold(n!.id)).toBe('power.on failed 6 times');
        expect(b.isFrozen()).toBe(true);

        // The other way round, and a change of spec and password.
        await b.updateNode(n!.id, { ...spec('n2', '52:54:00:00:00:0a') }, 'pw2', 'op');
        await b.setDesired(n!.id, { power: 'off' }, 'op');
        await waitFor(() => a.revision === b.revision, `the first state at revision ${b.revision}`);
        expect(a.resolve('n2').id).toBe(n!.id);
        expect(() => a.resolve('n')).toThrow(/no node/);
        expect(a.byMac('52:54:00:00:00:09')).toBeUndefined();
        expect(a.bmcPassword(n!.id)).toBe('pw2');
        expect(a.desired(n!.id)).toEqual({ power: 'off' });
        // A new wish released the hold, in the log too.
        expect(a.hold(n!.id)).toBeUndefined();

        await a.removeNode(n!.id, 'op');
        await waitFor(() => b.revision === a.revision, `the second state at revision ${a.revision}`);
        expect(b.list()).toEqual([]);
        expect(b.bmcPassword(n!.id)).toBeUndefined();
        expect(b.desired(n!.id)).toEqual({});
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    it('makes a 32-byte key file readable by its owner only at first open', async () => {
      const t = await fresh();
      await t.close(await t.open());
      expect(statSync(t.keyFile).mode & 0o777).toBe(0o600);
      expect(readFileSync(t.keyFile).length).toBe(32);
    });

    it('refuses to open a database whose secrets were sealed with another key, naming the key file', async () => {
      const t = await fresh();
      const store = await t.open();
      await store.commit([change('a', 'node', 'spec', '{}'), change('a', 'secret', 'bmc', 'pw')]);
      await t.close(store);
      writeFileSync(t.keyFile, randomBytes(32), { mode: 0o600 });
      await expect(t.open()).rejects.toThrow(/sealed with another key than .*secret\.key/);
    });

    it('refuses to open a sealed database whose key file is gone, instead of making a new key', async () => {
      const t = await fresh();
      await t.close(await t.open());
      const missing = join(t.keyFile, '..', 'elsewhere.key');
      await expect(t.open(missing)).rejects.toThrow(/key file .*elsewhere\.key does not exist/);
      expect(existsSync(missing)).toBe(false);
    });

    it('refuses a key file that is not 32 bytes', async () => {
      const t = await fresh();
      writeFileSync(t.keyFile, 'too short', { mode: 0o600 });
      await expect(t.open()).rejects.toThrow(/secret\.key holds 9 bytes; a secret key is 32/);
    });
  });
}
