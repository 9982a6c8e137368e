// The embedded store: one SQLite file in WAL mode. `events` is append-only (rev is its rowid);
// `facts` holds the latest value per (node, kind, facet) so a restart loads state without
// replaying the log.
import Database from 'better-sqlite3';
import { REDACTED, type Change, type EventQuery, type Fact, type ShoalEvent, type StateStore } from './store.js';

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
CREATE INDEX IF NOT EXISTS events_by_node ON events (node_id, rev);
CREATE TABLE IF NOT EXISTS facts (
  node_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  facet TEXT NOT NULL,
  value TEXT NOT NULL,
  detail TEXT,
  rev INTEGER NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (node_id, kind, facet)
) WITHOUT ROWID;
`;

interface EventRow {
  rev: number;
  at: number;
  node_id: string | null;
  kind: ShoalEvent['kind'];
  facet: string;
  old: string | null;
  new: string | null;
  detail: string | null;
  writer: string;
}

// Appliance-wide facts have no node; SQLite primary keys treat NULLs as distinct, so store ''.
const APPLIANCE = '';

export class SqliteStore implements StateStore {
  readonly db: Database.Database;
  private readonly insertEvent: Database.Statement;
  private readonly upsertFact: Database.Statement;
  private readonly deleteFact: Database.Statement;
  private readonly deleteNodeFacts: Database.Statement;
  private readonly current = new Map<string, string>();
  private rev = 0;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode survives a crash of the process (kill -9); only an OS crash can lose the
    // last transactions, which observations re-discover anyway.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
    this.insertEvent = this.db.prepare(
      'INSERT INTO events (at, node_id, kind, facet, old, new, detail, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.upsertFact = this.db.prepare(
      'INSERT INTO facts (node_id, kind, facet, value, detail, rev, at) VALUES (?, ?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT (node_id, kind, facet) DO UPDATE SET value = excluded.value, detail = excluded.detail, rev = excluded.rev, at = excluded.at',
    );
    this.deleteFact = this.db.prepare('DELETE FROM facts WHERE node_id = ? AND kind = ? AND facet = ?');
    this.deleteNodeFacts = this.db.prepare('DELETE FROM facts WHERE node_id = ?');
  }

  async load(): Promise<{ facts: Fact[]; rev: number }> {
    const rows = this.db.prepare('SELECT node_id, kind, facet, value, detail, rev, at FROM facts ORDER BY rev').all() as {
      node_id: string;
      kind: Fact['kind'];
      facet: string;
      value: string;
      detail: string | null;
      rev: number;
      at: number;
    }[];
    this.current.clear();
    const facts = rows.map((r) => {
      this.current.set(factKey(r.node_id, r.kind, r.facet), r.value);
      return { nodeId: r.node_id === APPLIANCE ? null : r.node_id, kind: r.kind, facet: r.facet, value: r.value, detail: r.detail, rev: r.rev, at: r.at };
    });
    this.rev = (this.db.prepare('SELECT coalesce(max(rev), 0) AS rev FROM events').get() as { rev: number }).rev;
    return { facts, rev: this.rev };
  }

  async commit(changes: Change[]): Promise<ShoalEvent[]> {
    return this.commitTransaction(changes);
  }

  private readonly commitTransaction = (changes: Change[]): ShoalEvent[] => {
    const events: ShoalEvent[] = [];
    const run = this.db.transaction(() => {
      for (const c of changes) {
        const node = c.nodeId ?? APPLIANCE;
        const key = factKey(node, c.kind, c.facet);
        const old = this.current.get(key) ?? null;
        const at = c.at ?? Date.now();
        const logged = (v: string | null) => (c.kind === 'secret' && v !== null ? REDACTED : v);
        const info = this.insertEvent.run(at, c.nodeId, c.kind, c.facet, logged(old), logged(c.value), c.detail ?? null, c.writer);
        const rev = Number(info.lastInsertRowid);
        if (c.kind === 'node' && c.value === null) {
          this.deleteNodeFacts.run(node);
          for (const k of [...this.current.keys()]) if (k.startsWith(`${node}\u0000`)) this.current.delete(k);
        } else if (c.value === null) {
          this.deleteFact.run(node, c.kind, c.facet);
          this.current.delete(key);
        } else {
          this.upsertFact.run(node, c.kind, c.facet, c.value, c.detail ?? null, rev, at);
          this.current.set(key, c.value);
        }
        events.push({ rev, at, nodeId: c.nodeId, kind: c.kind, facet: c.facet, old: logged(old), new: logged(c.value), detail: c.detail ?? null, writer: c.writer });
      }
    });
    run();
    this.rev = events.at(-1)?.rev ?? this.rev;
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

function factKey(node: string, kind: string, facet: string): string {
  return `${node}\u0000${kind}\u0000${facet}`;
}
