// The PostgreSQL store against a real PostgreSQL 15 that the tests start and remove themselves
// (test/support/postgres.ts): the store contract (test/support/store-contract.ts), then what only
// a shared database can show: one revision order for writers on several connections, versioned
// migrations, and BMC passwords absent from every table.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { skipUnless } from '../../test/support/environment.js';
import { postgresRequirement, sql, startPostgres, type TestPostgres } from '../../test/support/postgres.js';
import { describeDatabase, MIGRATIONS, PostgresStore, SchemaVersionError } from './postgres-store.js';
import { SecretKey } from './secret-key.js';
import { storeContract } from '../../test/support/store-contract.js';
import { FencedError, type Change, type ShoalEvent } from './store.js';

const skip = skipUnless('PostgreSQL store', postgresRequirement());

let server: TestPostgres | undefined;
beforeAll(async () => {
  if (!skip) server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

const dirs: string[] = [];
const stores: PostgresStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

function keyFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-pg-key-'));
  dirs.push(dir);
  return join(dir, 'secret.key');
}

async function open(url: string, key: string, poolSize?: number): Promise<PostgresStore> {
  const store = await PostgresStore.open(url, { keyFile: key, poolSize });
  stores.push(store);
  return store;
}


const observation = (nodeId: string, value: string, writer: string): Change => ({ nodeId, kind: 'observed', facet: 'power', value, old: null, writer });

describe.skipIf(skip)('PostgreSQL store', () => {
  storeContract({
    name: 'PostgreSQL',
    shared: true,
    async database() {
      const url = await server!.createDatabase();
      return { open: ({ keyFile: key }) => PostgresStore.open(url, { keyFile: key }) };
    },
  });

  it('gives writers on two pools one gap-free revision order, and a reader following afterRev sees every revision once, in order', async () => {
    const url = await server!.createDatabase();
    const key = keyFile();
    const [one, two] = [await open(url, key, 4), await open(url, key, 4)];
    const reader = await open(url, key, 1);
    const TASKS_PER_STORE = 4;
    const COMMITS_PER_TASK = 25;
    const total = 2 * TASKS_PER_STORE * COMMITS_PER_TASK * 2;
    const committed: ShoalEvent[][] = [];
    // Interleaved tasks on both stores: each commits batches of two, yielding between commits.
    const writers = [one, two].flatMap((store, s) =>
      Array.from({ length: TASKS_PER_STORE }, async (_, t) => {
        for (let i = 0; i < COMMITS_PER_TASK; i++) {
          const writer = `store${s}-task${t}`;
          committed.push(await store.commit([observation(`n${s}${t}`, 'on', writer), observation(`n${s}${t}`, 'off', writer)]));
          await new Promise((resolve) => setImmediate(resolve));
        }
      }),
    );
    let writing = true;
    const written = Promise.all(writers).finally(() => {
      writing = false;
    });
    const seen: number[] = [];
    let readsWhileWriting = 0;
    // Follows the log as an SSE feed would; once the writers are done, one empty page ends it.
    const following = (async () => {
      for (;;) {
        const finished = !writing;
        const page = await reader.events({ afterRev: seen.at(-1) ?? 0, limit: 7 });
        seen.push(...page.map((e) => e.rev));
        if (finished && page.length === 0) return;
        if (!finished) readsWhileWriting++;
      }
    })();
    await Promise.all([written, following]);

    expect(readsWhileWriting).toBeGreaterThan(10);
    const all = Array.from({ length: total }, (_, i) => i + 1);
    expect(seen).toEqual(all);
    expect(committed.flat().map((e) => e.rev).sort((a, b) => a - b)).toEqual(all);
    // A batch's events are consecutive: no other writer's event falls between them.
    for (const batch of committed) expect(batch[1]!.rev).toBe(batch[0]!.rev + 1);
    expect((await reader.events({ limit: 10_000 })).map((e) => e.rev)).toEqual(all);
  });

  it('applies its migrations once, recorded in schema_migrations, also when two appliances open a new database together', async () => {
    const url = await server!.createDatabase();
    const key = keyFile();
    SecretKey.create(key); // each appliance holds a copy of the one key
    await Promise.all([open(url, key), open(url, key)]);
    await open(url, key);
    const versions = await sql<{ version: number; description: string }>(url, 'SELECT version, description FROM schema_migrations ORDER BY version');
    expect(versions).toEqual(MIGRATIONS.map((m) => ({ version: m.version, description: m.description })));
  });

  it('hands a lease to one holder, takes an expired one over with the next epoch, and refuses a commit under an epoch taken over, whole', async () => {
    const url = await server!.createDatabase();
    const key = keyFile();
    const [a, b] = [await open(url, key), await open(url, key)];
    const own = { networks: ['10.1.0.0/24'], standbyFor: null };
    const first = await a.leases.acquire('a', 'a', 60_000, own);
    expect(first).toEqual({ name: 'a', holder: 'a', epoch: 1 });
    // Held and unexpired: neither a standby nor another start of `a` gets it; a standby cannot create one.
    expect(await b.leases.acquire('a', 'b', 60_000)).toBeUndefined();
    expect(await b.leases.acquire('a', 'a', 60_000, own)).toBeUndefined();
    expect(await b.leases.acquire('c', 'b', 60_000)).toBeUndefined();
    await a.commit([observation('n1', 'on', 'sim')], { fence: [first!] });

    // Expired by the database's clock: renewing with a TTL of 0 ends it now.
    expect(await a.leases.renew(first!, 0)).toBe(true);
    const second = await b.leases.acquire('a', 'b', 60_000);
    expect(second).toEqual({ name: 'a', holder: 'b', epoch: 2 });
    expect(await a.leases.renew(first!, 60_000)).toBe(false);
    const before = (await a.events({})).length;
    const refused = await a.commit([observation('n1', 'off', 'sim'), observation('n2', 'off', 'sim')], { fence: [first!] }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(FencedError);
    expect((refused as FencedError).current).toEqual({ holder: 'b', epoch: 2 });
    expect(await a.events({})).toHaveLength(before);
    await b.commit([observation('n1', 'off', 'sim')], { fence: [second!] });

    const leases = await a.leases.list();
    expect(leases.map(({ expiresInMs, ...rest }) => rest)).toEqual([{ name: 'a', holder: 'b', epoch: 2, networks: ['10.1.0.0/24'], standbyFor: null }]);
    expect(leases[0]!.expiresInMs).toBeGreaterThan(50_000);
    // The takeovers are on record, in the revision order.
    expect((await a.events({})).filter((e) => e.kind === 'appliance').map((e) => [e.facet, e.old, e.new, e.writer])).toEqual([
      ['lease/a', null, 'a#1', 'a'],
      ['lease/a', 'a#1', 'b#2', 'b'],
    ]);
  });

  it('refuses a database migrated by newer code, saying so', async () => {
    const url = await server!.createDatabase();
    const key = keyFile();
    await (await PostgresStore.open(url, { keyFile: key })).close();
    const newer = MIGRATIONS.at(-1)!.version + 1;
    await sql(url, "INSERT INTO schema_migrations (version, description) VALUES ($1, 'from the future')", [newer]);
    const refused = PostgresStore.open(url, { keyFile: key });
    await expect(refused).rejects.toThrow(SchemaVersionError);
    await expect(refused).rejects.toThrow(new RegExp(`schema version ${newer}, newer than this Shoal knows \\(${newer - 1}\\)`));
  });

  it('keeps no BMC password in any table, and reads them back with the key', async () => {
    const url = await server!.createDatabase();
    const key = keyFile();
    const store = await open(url, key);
    const passwords = ['correct horse battery staple', 'Tr0ub4dor&3'];
    await store.commit(passwords.flatMap((password, i): Change[] => [
      { nodeId: `n${i}`, kind: 'node', facet: 'spec', value: '{}', old: null, writer: 'op' },
      { nodeId: `n${i}`, kind: 'secret', facet: 'bmc', value: password, old: null, writer: 'op' },
    ]));
    const tables = (await sql<{ tablename: string }>(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).map((t) => t.tablename);
    expect(tables).toEqual(expect.arrayContaining(['events', 'secrets', 'api_users', 'store_meta', 'schema_migrations']));
    const everything = JSON.stringify(await Promise.all(tables.map((t) => sql(url, `SELECT * FROM "${t}"`))));
    for (const password of passwords) expect(everything).not.toContain(password);
    const reopened = await open(url, key);
    expect((await reopened.load()).facts.filter((f) => f.kind === 'secret').map((f) => f.value)).toEqual(passwords);
  });

  it('refuses a password sealed for one node and moved to another', async () => {
    const url = await server!.createDatabase();
    const key = keyFile();
    const store = await open(url, key);
    await store.commit(['a', 'b'].flatMap((id): Change[] => [
      { nodeId: id, kind: 'node', facet: 'spec', value: '{}', old: null, writer: 'op' },
      { nodeId: id, kind: 'secret', facet: 'bmc', value: `pw-${id}`, old: null, writer: 'op' },
    ]));
    await sql(url, "UPDATE secrets SET value = (SELECT value FROM secrets WHERE node_id = 'a') WHERE node_id = 'b'");
    await expect(store.load()).rejects.toThrow(/BMC password of node b does not open/);
  });

  it('says which database it cannot reach, within the connect timeout', async () => {
    const nowhere = `postgresql://shoal:s3cret@/shoal?host=${encodeURIComponent(join(server!.dir, 'no-such-dir'))}`;
    const refused = PostgresStore.open(nowhere, { keyFile: keyFile(), connectTimeoutMs: 2_000 });
    await expect(refused).rejects.toThrow(/cannot open the PostgreSQL database postgresql:\/\/shoal@\/shoal\?host=.*no-such-dir.* \(state\.url\): /);
    await expect(refused).rejects.not.toThrow(/s3cret/);
  });

  it('names the database in its messages without the password', () => {
    expect(describeDatabase('postgresql://shoal:s3cret@db.example:5432/shoal')).toBe('postgresql://shoal@db.example:5432/shoal');
    expect(describeDatabase('postgresql://shoal@/shoal?host=/run/postgresql')).toBe('postgresql://shoal@/shoal?host=/run/postgresql');
  });
});
