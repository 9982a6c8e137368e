// The embedded store: one SQLite file in WAL mode. The event log is the only record of state: each
// write is one row appended to `events` (rev is its rowid), and the current facts are the latest
// row per (node, kind, facet), found through one index at start-up. Writing state therefore costs
// what a raw insert costs. BMC secrets and the hashes of API users' tokens are the exception: the
// log records only that one was set, and the value lives in `secrets` (sealed with the key file,
// secret-key.ts) or `api_users`. `store_meta` names the key the secrets were sealed with, so a
// database opened with another key refuses to start instead of handing out blank passwords; a
// database from before sealing has its secrets sealed at open.
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { SecretKey, SecretKeyError } from './secret-key.js';
import { REDACTED, type Change, type EventQuery, type EventRow as StoredEventRow, type Fact, type ShoalEvent, type StateStore } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  rev INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  node_id TEXT,
  kind TEXT NOT NULL,
  facet TEXT NOT NULL,
  old TEXT,
  new TEXT,
  detail TEXT,
  writer TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_fact ON events (node_id, kind, facet, rev);
CREATE TABLE IF NOT EXISTS secrets (
  node_id TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_users (
  name TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS store_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

export interface SqliteStoreOptions {
  /** The file holding the key that seals BMC passwords; made at first open when missing. */
  keyFile: string;
}

type EventRow = StoredEventRow<number>;

export class SqliteStore implements StateStore {
  readonly db: Database.Database;
  private readonly insertEvent: Database.Statement;
  private readonly putSecret: Database.Statement;
  private readonly dropSecret: Database.Statement;
  private readonly putTokenHash: Database.Statement;
  private readonly dropTokenHash: Database.Statement;
  private readonly key: SecretKey;

  /** Throws a SecretKeyError if the key file does not belong to the database. */
  constructor(
    private readonly path: string,
    options: SqliteStoreOptions,
  ) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode survives a crash of the process (kill -9); only an OS crash can lose the
    // last transactions, which observations re-discover anyway.
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    try {
      this.key = this.secretKey(options.keyFile);
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.insertEvent = this.db.prepare(
      'INSERT INTO events (at, node_id, kind, facet, old, new, detail, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.putSecret = this.db.prepare('INSERT INTO secrets (node_id, value) VALUES (?, ?) ON CONFLICT (node_id) DO UPDATE SET value = excluded.value');
    this.dropSecret = this.db.prepare('DELETE FROM secrets WHERE node_id = ?');
    this.putTokenHash = this.db.prepare('INSERT INTO api_users (name, token_sha256) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256');
    this.dropTokenHash = this.db.prepare('DELETE FROM api_users WHERE name = ?');
  }

  /** The key for this database: the key file's, checked against the one the values were sealed with. */
  private secretKey(keyFile: string): SecretKey {
    const sealedWith = (this.db.prepare("SELECT value FROM store_meta WHERE name = 'secret_key_id'").get() as { value: string } | undefined)?.value;
    if (sealedWith === undefined) {
      const key = existsSync(keyFile) ? SecretKey.read(keyFile) : SecretKey.create(keyFile);
      this.sealPlaintextSecrets(key);
      return key;
    }
    if (!existsSync(keyFile)) {
      throw new SecretKeyError(`the BMC passwords in ${this.path} are sealed with a key, but the key file ${keyFile} does not exist: restore it (secrets.keyFile names where it is kept); a new key could not open them`);
    }
    const key = SecretKey.read(keyFile);
    if (key.id !== sealedWith) {
      throw new SecretKeyError(`the BMC passwords in this store were sealed with another key than ${keyFile}: start with the key file that belongs to ${this.path} (secrets.keyFile), or the passwords cannot be read`);
    }
    return key;
  }

  /**
   * A database from before secrets were sealed keeps them in plain text: sealed here, in one
   * transaction with the key's id, then the file is rebuilt (VACUUM) and the WAL emptied, so no
   * copy of the plain text survives in free pages or old WAL frames.
   */
  private sealPlaintextSecrets(key: SecretKey): void {
    const rows = this.db.prepare('SELECT node_id, value FROM secrets').all() as { node_id: string; value: string }[];
    const reseal = this.db.prepare('UPDATE secrets SET value = ? WHERE node_id = ?');
    this.db.transaction(() => {
      for (const r of rows) reseal.run(key.seal(r.node_id, r.value), r.node_id);
      this.db.prepare("INSERT INTO store_meta (name, value) VALUES ('secret_key_id', ?)").run(key.id);
    })();
    if (rows.length === 0) return;
    this.db.exec('VACUUM');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  async load(): Promise<{ facts: Fact[]; rev: number }> {
    const latest = this.db
      .prepare(
        `SELECT e.node_id, e.kind, e.facet, e.new, e.detail, e.rev, e.at, e.writer FROM events e
         JOIN (SELECT max(rev) AS rev FROM events GROUP BY node_id, kind, facet) l ON e.rev = l.rev
         ORDER BY e.rev`,
      )
      .all() as { node_id: string | null; kind: Fact['kind']; facet: string; new: string | null; detail: string | null; rev: number; at: number; writer: string }[];
    // A removed node's facts end with its removal, whatever came before.
    const live = new Set(latest.filter((r) => r.kind === 'node' && r.new !== null).map((r) => r.node_id));
    const secrets = new Map((this.db.prepare('SELECT node_id, value FROM secrets').all() as { node_id: string; value: string }[]).map((r) => [r.node_id, r.value]));
    const tokenHashes = new Map((this.db.prepare('SELECT name, token_sha256 FROM api_users').all() as { name: string; token_sha256: string }[]).map((r) => [r.name, r.token_sha256]));
    const facts: Fact[] = [];
    for (const r of latest) {
      if (r.new === null || (r.node_id !== null && !live.has(r.node_id))) continue;
      const value = r.kind === 'secret' ? this.key.openBmcPassword(r.node_id!, secrets.get(r.node_id!)) : r.kind === 'user' ? tokenHashes.get(r.facet) : r.new;
      if (value === undefined) continue;
      facts.push({ nodeId: r.node_id, kind: r.kind, facet: r.facet, value, detail: r.detail, rev: r.rev, at: r.at, writer: r.writer });
    }
    const rev = (this.db.prepare('SELECT coalesce(max(rev), 0) AS rev FROM events').get() as { rev: number }).rev;
    return { facts, rev };
  }

  async commit(changes: Change[]): Promise<ShoalEvent[]> {
    return this.commitTransaction(changes);
  }

  private readonly commitTransaction = (changes: Change[]): ShoalEvent[] => {
    const events: ShoalEvent[] = [];
    const run = this.db.transaction(() => {
      for (const c of changes) {
        const at = c.at ?? Date.now();
        const detail = c.detail ?? null;
        let { old, value } = c;
        if (c.kind === 'secret') {
          if (c.nodeId === null) throw new Error('a secret belongs to a node: the change has none');
          if (value === null) this.dropSecret.run(c.nodeId);
          else this.putSecret.run(c.nodeId, this.key.seal(c.nodeId, value));
          old = old === null ? null : REDACTED;
          value = value === null ? null : REDACTED;
        } else if (c.kind === 'user') {
          if (value === null) this.dropTokenHash.run(c.facet);
          else this.putTokenHash.run(c.facet, value);
          old = old === null ? null : REDACTED;
          value = value === null ? null : REDACTED;
        } else if (c.kind === 'node' && value === null) {
          this.dropSecret.run(c.nodeId);
        }
        const info = this.insertEvent.run(at, c.nodeId, c.kind, c.facet, old, value, detail, c.writer);
        events.push({ rev: Number(info.lastInsertRowid), at, nodeId: c.nodeId, kind: c.kind, facet: c.facet, old, new: value, detail, writer: c.writer });
      }
    });
    run();
    return events;
  };

  async events(query: EventQuery): Promise<ShoalEvent[]> {
    const limit = Math.min(query.limit ?? 1000, 10_000);
    const rows = (
      query.nodeId
        ? this.db.prepare('SELECT * FROM events WHERE node_id = ? AND rev > ? ORDER BY rev LIMIT ?').all(query.nodeId, query.afterRev ?? 0, limit)
        : this.db.prepare('SELECT * FROM events WHERE rev > ? ORDER BY rev LIMIT ?').all(query.afterRev ?? 0, limit)
    ) as EventRow[];
    return rows.map((r) => ({ rev: r.rev, at: r.at, nodeId: r.node_id, kind: r.kind, facet: r.facet, old: r.old, new: r.new, detail: r.detail, writer: r.writer }));
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
