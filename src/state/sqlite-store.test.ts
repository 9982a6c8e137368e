// The SQLite store: the store contract (test/support/store-contract.ts) on a file, and what only a
// file can show: BMC passwords at rest, sealed with a key kept in a file of its own, so the
// database alone (every byte of it, every table, the WAL) gives none away, and an old database's
// plain-text passwords are sealed at open.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterState } from './cluster-state.js';
import { SqliteStore } from './sqlite-store.js';
import { storeContract } from '../../test/support/store-contract.js';
import type { NodeSpec } from '../domain/node.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-secrets-'));
  dirs.push(dir);
  return dir;
}

const spec = (name: string, mac: string): NodeSpec => ({ name, macs: [mac], bmc: { scheme: 'ipmi', host: '127.0.0.1', port: 623, username: 'admin' }, arch: 'x86_64', firmware: 'bios', labels: {} });

const PASSWORDS = ['correct horse battery staple', 'Tr0ub4dor&3', 'hunter2-bmc-password'];
/** The password of nodes an old database removed: its plain text lingers in the file's free pages. */
const RETIRED = 'password of a removed node';

/** Every byte the database keeps on disk (the file, its WAL and shared memory), and every row of every table as text. */
function everythingTheDatabaseHolds(dir: string): { bytes: Buffer; rows: string } {
  const files = readdirSync(dir).filter((f) => f.startsWith('shoal.db'));
  const bytes = Buffer.concat(files.map((f) => readFileSync(join(dir, f))));
  const db = new Database(join(dir, 'shoal.db'), { readonly: true });
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
  const rows = JSON.stringify(tables.map((t) => db.prepare(`SELECT * FROM "${t}"`).all()));
  db.close();
  return { bytes, rows };
}

function expectNoPassword(dir: string): void {
  const { bytes, rows } = everythingTheDatabaseHolds(dir);
  for (const password of [...PASSWORDS, RETIRED]) {
    expect(bytes.includes(Buffer.from(password, 'utf8')), `"${password}" in the database's bytes`).toBe(false);
    expect(rows.includes(password), `"${password}" in a table`).toBe(false);
  }
}

async function enrollWithPasswords(store: SqliteStore): Promise<ClusterState> {
  const state = await ClusterState.open(store);
  await state.addNodes(PASSWORDS.map((bmcPassword, i) => ({ spec: spec(`n${i}`, `52:54:00:00:00:0${i}`), bmcPassword })), 'op');
  return state;
}

/** A database as the appliance wrote it before secrets were sealed: the same schema, passwords in plain text. */
function writeOldDatabase(dir: string): string[] {
  const db = new Database(join(dir, 'shoal.db'));
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE events (rev INTEGER PRIMARY KEY, at INTEGER NOT NULL, node_id TEXT, kind TEXT NOT NULL, facet TEXT NOT NULL, old TEXT, new TEXT, detail TEXT, writer TEXT NOT NULL);
    CREATE INDEX events_by_fact ON events (node_id, kind, facet, rev);
    CREATE TABLE secrets (node_id TEXT PRIMARY KEY, value TEXT NOT NULL);`);
  const ids = PASSWORDS.map((_, i) => `node-${i}`);
  const event = db.prepare('INSERT INTO events (at, node_id, kind, facet, old, new, detail, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  PASSWORDS.forEach((password, i) => {
    event.run(1, ids[i], 'node', 'spec', null, JSON.stringify(spec(`n${i}`, `52:54:00:00:00:0${i}`)), null, 'op');
    event.run(1, ids[i], 'secret', 'bmc', null, '(set)', null, 'op');
    db.prepare('INSERT INTO secrets (node_id, value) VALUES (?, ?)').run(ids[i], password);
  });
  // Enough removed nodes to free whole pages, which SQLite keeps as they were.
  for (let i = 0; i < 500; i++) db.prepare('INSERT INTO secrets (node_id, value) VALUES (?, ?)').run(`removed-${i}`, RETIRED);
  db.prepare("DELETE FROM secrets WHERE node_id LIKE 'removed-%'").run();
  db.close();
  return ids;
}

storeContract({
  name: 'SQLite',
  shared: false,
  async database() {
    const path = join(tempDir(), 'shoal.db');
    return { open: async ({ keyFile }) => new SqliteStore(path, { keyFile }) };
  },
});

describe('BMC passwords at rest in the SQLite file', () => {
  it('keeps no password in any byte or table of the database, and reads them back with the key', async () => {
    const dir = tempDir();
    const keyFile = join(dir, 'secret.key');
    const store = new SqliteStore(join(dir, 'shoal.db'), { keyFile });
    const state = await enrollWithPasswords(store);
    const ids = state.list().map((n) => n.id);
    // One password changed and back: no copy of either lingers.
    await state.updateNode(ids[0]!, spec('n0', '52:54:00:00:00:00'), 'a-new-password', 'op');
    await state.updateNode(ids[0]!, spec('n0', '52:54:00:00:00:00'), PASSWORDS[0], 'op');
    expectNoPassword(dir); // while it runs: the WAL too
    await store.close();
    expectNoPassword(dir);

    const reopened = await ClusterState.open(new SqliteStore(join(dir, 'shoal.db'), { keyFile }));
    expect(ids.map((id) => reopened.bmcPassword(id))).toEqual(PASSWORDS);
  });

  it('seals the plain-text passwords of an old database when it opens, leaving none behind', async () => {
    const dir = tempDir();
    const ids = writeOldDatabase(dir);
    expect(everythingTheDatabaseHolds(dir).bytes.includes(Buffer.from(RETIRED))).toBe(true);
    const store = new SqliteStore(join(dir, 'shoal.db'), { keyFile: join(dir, 'secret.key') });
    const state = await ClusterState.open(store);
    expect(ids.map((id) => state.bmcPassword(id))).toEqual(PASSWORDS);
    await store.close();
    expectNoPassword(dir);
  });

  it('refuses a password sealed for one node and moved to another', async () => {
    const dir = tempDir();
    const keyFile = join(dir, 'secret.key');
    const store = new SqliteStore(join(dir, 'shoal.db'), { keyFile });
    const state = await enrollWithPasswords(store);
    const [a, b] = state.list();
    await store.close();
    const db = new Database(join(dir, 'shoal.db'));
    db.prepare('UPDATE secrets SET value = (SELECT value FROM secrets WHERE node_id = ?) WHERE node_id = ?').run(a!.id, b!.id);
    db.close();
    const reopened = new SqliteStore(join(dir, 'shoal.db'), { keyFile });
    await expect(reopened.load()).rejects.toThrow(new RegExp(`BMC password of node ${b!.id} does not open`));
    await reopened.close();
  });
});
