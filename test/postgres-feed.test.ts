// Several appliances on one PostgreSQL database see one cluster: the store's feed (LISTEN/NOTIFY
// and catch-up reads, src/state/postgres-store.ts) against a real PostgreSQL 15, first on its own
// (a listening connection killed loses no event and repeats none; a notification that names no
// revision is refused at the edge), then between two appliances: a write through one is in the
// other's API, event stream and engine.
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { FEED_APPLICATION_NAME, PostgresStore } from '../src/state/postgres-store.js';
import type { Change, FeedBatch, ShoalEvent } from '../src/state/store.js';
import type { NodePhase } from '../src/engine/executor.js';
import { SimRack } from '../modules/sim/sim.js';
import { skipUnless } from './support/environment.js';
import { postgresRequirement, sql, startPostgres, type TestPostgres } from './support/postgres.js';
import { useCleanups, waitFor } from './support/cleanups.js';

const skip = skipUnless('the PostgreSQL feed', postgresRequirement());

let server: TestPostgres | undefined;
beforeAll(async () => {
  if (!skip) server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

const { cleanups, tempDir } = useCleanups('shoal-feed-');


const listenerPids = async (url: string): Promise<number[]> =>
  (await sql<{ pid: number }>(url, 'SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database() ORDER BY pid', [FEED_APPLICATION_NAME])).map((r) => r.pid);

/** A log that keeps its messages, so a test can wait for what the feed says. */
function capturedLog(): { log: { info: (f: object, m: string) => void; warn: (f: object, m: string) => void }; messages: string[] } {
  const messages: string[] = [];
  const keep = (_fields: object, message: string) => void messages.push(message);
  return { log: { info: keep, warn: keep }, messages };
}

const observation = (i: number): Change => ({ nodeId: 'n', kind: 'observed', facet: 'power', value: i % 2 ? 'on' : 'off', old: null, writer: 'test' });

describe.skipIf(skip)('the PostgreSQL feed', () => {
  async function twoStores(): Promise<{ url: string; writer: PostgresStore; follower: PostgresStore }> {
    const url = await server!.createDatabase();
    const keyFile = join(tempDir(), 'secret.key');
    const writer = await PostgresStore.open(url, { keyFile });
    cleanups.push(() => writer.close());
    const follower = await PostgresStore.open(url, { keyFile });
    cleanups.push(() => follower.close());
    return { url, writer, follower };
  }

  it('hands over what was committed while its listening connection was gone, after the reconnect, none lost and none twice', async () => {
    const { url, writer, follower } = await twoStores();
    await writer.commit([observation(0)]);
    const delivered: ShoalEvent[] = [];
    const { log, messages } = capturedLog();
    // A long first wait, so the commits below surely land while nobody listens.
    const feed = await follower.follow(0, async (batch: FeedBatch) => void delivered.push(...batch.events), { log, reconnect: { minMs: 1500, maxMs: 3000 } });
    cleanups.push(() => feed.close());
    await writer.commit([observation(1)]);
    await waitFor(() => delivered.length === 2, 'two events through the feed');

    const [pid] = await listenerPids(url);
    expect(pid).toBeDefined();
    await sql(url, 'SELECT pg_terminate_backend($1)', [pid]);
    await waitFor(() => messages.some((m) => m.includes('lost its listening connection')), 'the feed to notice its connection is gone');
    const meanwhile = [];
    for (let i = 2; i < 12; i++) meanwhile.push(...(await writer.commit([observation(i), observation(i + 100)])));
    expect(messages.some((m) => m.includes('listens again'))).toBe(false);

    await waitFor(() => delivered.length === 2 + meanwhile.length, `${meanwhile.length} more events after the reconnect`);
    expect(messages.some((m) => m.includes('listens again'))).toBe(true);
    expect(delivered.map((e) => e.rev)).toEqual(Array.from({ length: 2 + meanwhile.length }, (_, i) => i + 1));
    expect(delivered.slice(2)).toEqual(meanwhile);
    expect(await listenerPids(url)).not.toContain(pid);

    // Listening again: a new commit arrives through its notification.
    const [next] = await writer.commit([observation(50)]);
    await waitFor(() => delivered.at(-1)?.rev === next!.rev, 'a commit after the reconnect');
    expect(delivered).toHaveLength(3 + meanwhile.length);
  });

  it('refuses a notification that names no revision at the edge, and still reads the log', async () => {
    const { url, writer, follower } = await twoStores();
    const delivered: ShoalEvent[] = [];
    const { log, messages } = capturedLog();
    const feed = await follower.follow(0, async (batch) => void delivered.push(...batch.events), { log });
    cleanups.push(() => feed.close());
    await sql(url, "NOTIFY shoal_events, 'twelve; DROP TABLE events'");
    await waitFor(() => messages.some((m) => m.includes('names no revision')), 'the warning about the notification');
    const [event] = await writer.commit([observation(1)]);
    await waitFor(() => delivered.length === 1, 'the next event');
    expect(delivered).toEqual([event]);
  });
});

describe.skipIf(skip)('two appliances on one PostgreSQL database', () => {
  /** Both appliances' copy of the one key file the database's secrets are sealed with. */
  let keyDir: string | undefined;
  async function start(url: string, name: string, log = createLogger('silent')): Promise<Appliance> {
    const dataDir = tempDir();
    const config = loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 }, state: { backend: 'postgres', url }, secrets: { keyFile: join(keyDir!, 'secret.key') }, appliance: { name } });
    const appliance = await Appliance.start(config, { modules: [new SimRack({ latencies: { powerMs: 20, bootStageMs: 20 } })], log });
    cleanups.push(async () => {
      const problems = await appliance.stop();
      if (problems.length > 0) throw new Error(`an appliance did not stop cleanly: ${problems.join('; ')}`);
    });
    return appliance;
  }

  /** The API of `appliance`, with a token (the first appliance's admin token is everyone's: one cluster, one set of users). */
  const api = (appliance: Appliance, token: string) => async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${appliance.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => undefined)) as any };
  };

  /** Follows an appliance's event stream from the start of the log, collecting the events. */
  async function stream(appliance: Appliance, token: string): Promise<ShoalEvent[]> {
    const controller = new AbortController();
    const res = await fetch(`${appliance.url}/api/v1/events/stream`, { headers: { authorization: `Bearer ${token}`, 'last-event-id': '0' }, signal: controller.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events: ShoalEvent[] = [];
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const data = /^data: (.*)$/m.exec(buffer.slice(0, end))?.[1];
          buffer = buffer.slice(end + 2);
          if (data) events.push(JSON.parse(data) as ShoalEvent);
        }
      }
    })().catch(() => undefined);
    cleanups.push(async () => {
      controller.abort();
      await reading;
    });
    return events;
  }

  /** The log as the stream must show it: every revision once, in order, none missing. */
  const gapFree = (events: ShoalEvent[]) => expect(events.map((e) => e.rev)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));

  it("shows a node and a desired state written through one in the other's API, event stream and engine, also across a lost listening connection", async () => {
    const url = await server!.createDatabase();
    keyDir = tempDir();
    const a = await start(url, 'a');
    const pidOfA = await listenerPids(url);
    const messages: string[] = [];
    const b = await start(
      url,
      'b',
      createLogger(
        'info',
        new Writable({
          write(chunk, _encoding, done) {
            messages.push(String(chunk));
            done();
          },
        }),
      ),
    );
    const pidOfB = (await listenerPids(url)).filter((p) => !pidOfA.includes(p));
    expect(pidOfB).toHaveLength(1);
    const onA = api(a, a.token);
    const onB = api(b, a.token);
    const seenByB = await stream(b, a.token);
    const phasesOnA: [string, NodePhase | undefined][] = [];
    a.engine.executor.on('phase', (id, phase) => phasesOnA.push([id, phase]));

    const spec = { name: 'x01', macs: ['52:54:00:bb:00:01'], bmc: 'sim://bmc-x01', bmcPassword: 'pw' };
    const added = await onA('POST', '/api/v1/nodes', spec);
    expect(added.status).toBe(201);
    const id = added.body.id as string;
    await waitFor(async () => (await onB('GET', `/api/v1/nodes/${spec.name}`)).status === 200, "the node in B's API");
    expect(b.state.bmcPassword(id)).toBe('pw');

    expect((await onA('PATCH', `/api/v1/nodes/${spec.name}/desired`, { power: 'on' })).status).toBe(200);
    await waitFor(async () => (await onB('GET', `/api/v1/nodes/${spec.name}/desired`)).body?.power === 'on', "the desired state in B's API");
    // B's engine plans the wish, but the node is A's (enrolled through it, no address): A's engine acts on it.
    expect(b.engine.executor.planFor(id).steps.length).toBeGreaterThan(0);
    expect(b.ownership.owns(id)).toBe(false);
    await waitFor(() => phasesOnA.some(([node, phase]) => node === id && phase === 'converging'), "A's engine converging the node");

    const nodeEvent = (events: ShoalEvent[]) => events.find((e) => e.nodeId === id && e.kind === 'node');
    const desiredEvent = (events: ShoalEvent[]) => events.find((e) => e.nodeId === id && e.kind === 'desired' && e.new === 'on');
    await waitFor(() => desiredEvent(seenByB) !== undefined, "the desired event in B's stream");
    expect(nodeEvent(seenByB)!.rev).toBeLessThan(desiredEvent(seenByB)!.rev);
    gapFree(seenByB);

    // B's listening connection goes; what A writes meanwhile reaches B after the reconnect, once.
    await sql(url, 'SELECT pg_terminate_backend($1)', [pidOfB[0]]);
    await waitFor(() => messages.some((m) => m.includes('lost its listening connection')), 'B noticing its feed connection is gone');
    const other = { name: 'y01', macs: ['52:54:00:bb:00:02'], bmc: 'sim://bmc-y01' };
    expect((await onA('POST', '/api/v1/nodes', other)).status).toBe(201);
    expect((await onA('PATCH', `/api/v1/nodes/${other.name}/desired`, { power: 'off' })).status).toBe(200);
    await a.state.flush();
    const revisionOfA = a.state.revision;
    await waitFor(async () => (await onB('GET', `/api/v1/nodes/${other.name}/desired`)).body?.power === 'off', "the second node's desired state in B's API");
    await waitFor(() => seenByB.some((e) => e.rev >= revisionOfA), `revision ${revisionOfA} in B's stream`);
    expect(messages.some((m) => m.includes('listens again'))).toBe(true);
    gapFree(seenByB);
    expect(seenByB.filter((e) => e.kind === 'node').map((e) => JSON.parse(e.new!).name)).toEqual([spec.name, other.name]);
  });

  it("makes a user and a profile written through one the other's too, and a removed user's token refused by both", async () => {
    const url = await server!.createDatabase();
    keyDir = tempDir();
    const a = await start(url, 'a');
    const b = await start(url, 'b');
    const onA = api(a, a.token);
    const created = await onA('POST', '/api/v1/users', { name: 'vera', role: 'viewer' });
    expect(created.status).toBe(201);
    const asVera = api(b, created.body.token as string);
    await waitFor(async () => (await asVera('GET', '/api/v1/nodes')).status === 200, "vera's token accepted by B");

    const profile = { selector: 'role=compute', settings: { hostname: '{{ name }}.lab' } };
    expect((await onA('PUT', '/api/v1/profiles/compute', profile)).status).toBe(201);
    await waitFor(async () => (await api(b, a.token)('GET', '/api/v1/profiles/compute')).status === 200, "the profile in B's API");
    expect((await api(b, a.token)('GET', '/api/v1/profiles/compute')).body).toMatchObject(profile);

    expect((await onA('DELETE', '/api/v1/users/vera')).status).toBe(204);
    await waitFor(async () => (await asVera('GET', '/api/v1/nodes')).status === 401, "vera's token refused by B");
    expect((await api(a, created.body.token as string)('GET', '/api/v1/nodes')).status).toBe(401);
  });
});
