import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterState, ConflictError } from './cluster-state.js';
import { SqliteStore } from './sqlite-store.js';
import type { NodeSpec } from '../domain/node.js';

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
