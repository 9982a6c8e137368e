// The shared store: the same contract as the SQLite file (sqlite-store.ts), on PostgreSQL 15, so
// several appliances can keep one cluster's state. Same semantics: the event log is the only
// record of state (the current facts are the latest row per node, kind and facet), BMC secrets and
// API users' token hashes stay out of the log (it says only that one was set; the values live in
// `secrets`, sealed with the key file, and `api_users`), and `store_meta` names the key the
// secrets were sealed with, so a database opened with another key refuses to start. Every
// appliance on one database needs a copy of the same key file.
//
// Client: `pg` (node-postgres). It is the most used and longest kept PostgreSQL client for Node,
// has a connection pool built in, supports LISTEN/NOTIFY (the feed below), and is pure JavaScript,
// so it needs no native build on the head node.
//
// One revision order for the whole cluster. Revisions are not a sequence (a sequence hands out
// numbers at insert time, and transactions commit in another order, so a reader following
// `afterRev` could read 12, then see 11 commit behind it and never read it). Each commit
// transaction instead starts with `pg_advisory_xact_lock(REVISION_LOCK)`, then reads max(rev) and
// numbers its events after it. The lock is held until the transaction ends, and PostgreSQL makes a
// commit visible before it releases the transaction's locks, so: revisions are gap-free (a rolled
// back transaction leaves its numbers to the next) and committed in their order, and a snapshot
// that shows revision N shows every revision below N. Two details carry this: the transactions are
// READ COMMITTED whatever the server's default (under REPEATABLE READ the snapshot would be taken
// by the lock statement, before the previous holder's commit), and max(rev) is read by a statement
// of its own after the lock is granted (a statement's snapshot is taken when it starts).
//
// Leases (migration 2, PostgresLeases): which appliance acts on whose nodes, at which epoch, until
// when by the database's clock; a commit that carries a lease taken over since is refused whole
// (FencedError). src/state/ownership.ts holds them; README.md says how.
//
// The feed (follow): each commit sends NOTIFY shoal_events with its last revision, inside its
// transaction, so PostgreSQL delivers it only if the transaction commits, and after its rows are
// visible. A follower LISTENs on a connection of its own and, at start, on each notification and
// after each reconnect, reads everything after the last revision it handed over: a notification is
// only a wake-up, the read is what makes the feed gap-free (notifications sent while the listener
// was away are lost, the rows are not). README.md says more.
import { existsSync } from 'node:fs';
import pg from 'pg';
import { z } from 'zod';
import { SecretKey, SecretKeyError } from './secret-key.js';
import { FencedError, REDACTED, StoreUnavailableError, type Change, type CommitOptions, type LeaseClaim, type LeaseRow, type LeaseStore, type EventQuery, type EventRow as StoredEventRow, type Fact, type Feed, type FeedBatch, type FollowOptions, type ShoalEvent, type StateStore } from './store.js';

/** Advisory lock keys (one bigint namespace per database): 'shoal' in ASCII, then what the lock guards. */
const REVISION_LOCK = 0x73686f616c01n;
const MIGRATION_LOCK = 0x73686f616c02n;

/** The NOTIFY channel of the event log; the payload is the committing transaction's last revision. */
const EVENTS_CHANNEL = 'shoal_events';
/** What the listening connection calls itself in pg_stat_activity, so an operator can tell it from the pool's. */
export const FEED_APPLICATION_NAME = 'shoal-feed';
/** Events read per catch-up query. */
const FEED_PAGE = 1000;

/** A NOTIFY payload, from the wire: a revision, and nothing else. */
const NotifyPayloadSchema = z
  .string()
  .regex(/^[0-9]{1,15}$/, 'a revision is a decimal number')
  .transform(Number);

interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** Applied in order, each in one transaction; a released migration is never edited, only followed by another. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'the event log, sealed BMC secrets, API users, store metadata',
    sql: `
      CREATE TABLE events (
        rev bigint PRIMARY KEY,
        at bigint NOT NULL,
        node_id text,
        kind text NOT NULL,
        facet text NOT NULL,
        old text,
        new text,
        detail text,
        writer text NOT NULL
      );
      CREATE INDEX events_by_fact ON events (node_id, kind, facet, rev);
      CREATE INDEX events_by_node ON events (node_id, rev);
      CREATE TABLE secrets (node_id text PRIMARY KEY, value text NOT NULL);
      CREATE TABLE api_users (name text PRIMARY KEY, token_sha256 text NOT NULL);
      CREATE TABLE store_meta (name text PRIMARY KEY, value text NOT NULL);
    `,
  },
  {
    version: 2,
    description: 'leases: which appliance holds the nodes of each appliance, at which epoch, until when',
    sql: `
      CREATE TABLE leases (
        appliance text PRIMARY KEY,
        holder text NOT NULL,
        epoch bigint NOT NULL CHECK (epoch > 0),
        expires_at timestamptz NOT NULL,
        networks text NOT NULL,
        standby_for text
      );
    `,
  },
];

export class SchemaVersionError extends Error {}

export interface PostgresStoreOptions {
  /** The file holding the key that seals BMC passwords; made at first open when missing. */
  keyFile: string;
  /** Connections kept open (default 10). */
  poolSize?: number;
  /** How long a new connection may take (default 10 s): an unreachable server fails the call instead of hanging it. */
  connectTimeoutMs?: number;
  /** An idle pooled connection failed (e.g. the server restarted); the pool replaces it, so this is only news. */
  onIdleError?: (err: Error) => void;
}

type EventRow = StoredEventRow<string>;

/** The URL without its password, for messages. */
export function describeDatabase(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/, '$1@');
}

export class PostgresStore implements StateStore {
  private readonly feeds = new Set<PostgresFeed>();
  readonly leases: LeaseStore;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly key: SecretKey,
    private readonly url: string,
    private readonly connectTimeoutMs: number,
  ) {
    this.leases = new PostgresLeases(pool);
  }

  /**
   * Connects, applies the pending migrations and checks the key file. Throws a SchemaVersionError if
   * the database is newer than this code, a SecretKeyError if the key file does not belong to it.
   */
  static async open(url: string, options: PostgresStoreOptions): Promise<PostgresStore> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10, connectionTimeoutMillis: connectTimeoutMs });
    // Without a listener an idle connection's error would be thrown as an uncaught exception.
    pool.on('error', (err) => options.onIdleError?.(err));
    const where = describeDatabase(url);
    try {
      await migrate(pool, where);
      return new PostgresStore(pool, await secretKey(pool, options.keyFile, where), url, connectTimeoutMs);
    } catch (err) {
      await pool.end();
      if (err instanceof SchemaVersionError || err instanceof SecretKeyError) throw err;
      throw new Error(`cannot open the PostgreSQL database ${where} (state.url): ${(err as Error).message}`, { cause: err });
    }
  }

  async load(): Promise<{ facts: Fact[]; rev: number }> {
    // One snapshot: the facts, the secrets and the revision belong together.
    return transaction(this.pool, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', async (client) => {
      const latest = (
        await client.query<Omit<EventRow, 'old'>>(
          `SELECT * FROM (
             SELECT DISTINCT ON (node_id, kind, facet) rev, at, node_id, kind, facet, new, detail, writer
             FROM events ORDER BY node_id, kind, facet, rev DESC
           ) latest ORDER BY rev`,
        )
      ).rows;
      // A removed node's facts end with its removal, whatever came before.
      const live = new Set(latest.filter((r) => r.kind === 'node' && r.new !== null).map((r) => r.node_id));
      const secrets = new Map((await client.query<{ node_id: string; value: string }>('SELECT node_id, value FROM secrets')).rows.map((r) => [r.node_id, r.value]));
      const tokenHashes = new Map((await client.query<{ name: string; token_sha256: string }>('SELECT name, token_sha256 FROM api_users')).rows.map((r) => [r.name, r.token_sha256]));
      const facts: Fact[] = [];
      for (const r of latest) {
        if (r.new === null || (r.node_id !== null && !live.has(r.node_id))) continue;
        const value = r.kind === 'secret' ? this.key.openBmcPassword(r.node_id!, secrets.get(r.node_id!)) : r.kind === 'user' ? tokenHashes.get(r.facet) : r.new;
        if (value === undefined) continue;
        facts.push({ nodeId: r.node_id, kind: r.kind, facet: r.facet, value, detail: r.detail, rev: Number(r.rev), at: Number(r.at), writer: r.writer });
      }
      const rev = Number((await client.query<{ rev: string }>('SELECT coalesce(max(rev), 0) AS rev FROM events')).rows[0]!.rev);
      return { facts, rev };
    });
  }

  async commit(changes: Change[], options: CommitOptions = {}): Promise<ShoalEvent[]> {
    if (changes.length === 0) return [];
    return this.reaching(() => this.commitBatch(changes, options));
  }

  /** Runs a call on the database; a call that could not reach it fails with a StoreUnavailableError naming it. */
  private async reaching<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      throw unreachable(describeDatabase(this.url), err as Error);
    }
  }

  private commitBatch(changes: Change[], options: CommitOptions): Promise<ShoalEvent[]> {
    return transaction(this.pool, 'BEGIN ISOLATION LEVEL READ COMMITTED', async (client) => {
      // The revision order (see the header): the lock first, then max(rev) in a statement of its own.
      await client.query('SELECT pg_advisory_xact_lock($1)', [REVISION_LOCK]);
      // Takeovers take the same lock (PostgresLeases.acquire): a commit is ordered wholly before a
      // takeover of a lease it carries, or after it and refused.
      if (options.fence && options.fence.length > 0) await checkFence(client, options.fence);
      let rev = Number((await client.query<{ rev: string }>('SELECT coalesce(max(rev), 0) AS rev FROM events')).rows[0]!.rev);
      const events: ShoalEvent[] = [];
      for (const c of changes) {
        const at = c.at ?? Date.now();
        const detail = c.detail ?? null;
        let { old, value } = c;
        if (c.kind === 'secret') {
          if (c.nodeId === null) throw new Error('a secret belongs to a node: the change has none');
          if (value === null) await client.query('DELETE FROM secrets WHERE node_id = $1', [c.nodeId]);
          else await client.query('INSERT INTO secrets (node_id, value) VALUES ($1, $2) ON CONFLICT (node_id) DO UPDATE SET value = excluded.value', [c.nodeId, this.key.seal(c.nodeId, value)]);
          old = old === null ? null : REDACTED;
          value = value === null ? null : REDACTED;
        } else if (c.kind === 'user') {
          if (value === null) await client.query('DELETE FROM api_users WHERE name = $1', [c.facet]);
          else await client.query('INSERT INTO api_users (name, token_sha256) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256', [c.facet, value]);
          old = old === null ? null : REDACTED;
          value = value === null ? null : REDACTED;
        } else if (c.kind === 'node' && value === null) {
          await client.query('DELETE FROM secrets WHERE node_id = $1', [c.nodeId]);
        }
        events.push({ rev: ++rev, at, nodeId: c.nodeId, kind: c.kind, facet: c.facet, old, new: value, detail, writer: c.writer });
      }
      // One statement for the whole batch, a group commit of observations is one round trip, and
      // the NOTIFY rides in it: sent in this transaction, it is delivered only if the batch commits.
      await insertEvents(client, events);
      return events;
    });
  }

  async events(query: EventQuery): Promise<ShoalEvent[]> {
    const limit = Math.min(query.limit ?? 1000, 10_000);
    const { rows } = await this.reaching(() =>
      query.nodeId
        ? this.pool.query<EventRow>('SELECT * FROM events WHERE node_id = $1 AND rev > $2 ORDER BY rev LIMIT $3', [query.nodeId, query.afterRev ?? 0, limit])
        : this.pool.query<EventRow>('SELECT * FROM events WHERE rev > $1 ORDER BY rev LIMIT $2', [query.afterRev ?? 0, limit]),
    );
    return rows.map(eventOf);
  }

  async follow(afterRev: number, onBatch: (batch: FeedBatch) => Promise<void>, options: FollowOptions): Promise<Feed> {
    const feed = new PostgresFeed(
      () => listeningClient(this.url, this.connectTimeoutMs),
      (after) => this.batchAfter(after),
      describeDatabase(this.url),
      afterRev,
      onBatch,
      options,
      () => this.feeds.delete(feed),
    );
    this.feeds.add(feed);
    try {
      await feed.start();
    } catch (err) {
      await feed.close();
      throw err;
    }
    return feed;
  }

  /** The next page of the log after `afterRev`, with the values of its secrets and users, from one snapshot. */
  private batchAfter(afterRev: number): Promise<FeedBatch> {
    return transaction(this.pool, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', async (client) => {
      const events = (await client.query<EventRow>('SELECT * FROM events WHERE rev > $1 ORDER BY rev LIMIT $2', [afterRev, FEED_PAGE])).rows.map(eventOf);
      const values = new Map<number, string>();
      const setting = (kind: ShoalEvent['kind']) => events.filter((e) => e.kind === kind && e.new !== null);
      const secretEvents = setting('secret');
      if (secretEvents.length > 0) {
        const { rows } = await client.query<{ node_id: string; value: string }>('SELECT node_id, value FROM secrets WHERE node_id = ANY($1)', [secretEvents.map((e) => e.nodeId)]);
        const sealed = new Map(rows.map((r) => [r.node_id, r.value]));
        for (const e of secretEvents) {
          const value = this.key.openBmcPassword(e.nodeId!, sealed.get(e.nodeId!));
          if (value !== undefined) values.set(e.rev, value);
        }
      }
      const userEvents = setting('user');
      if (userEvents.length > 0) {
        const { rows } = await client.query<{ name: string; token_sha256: string }>('SELECT name, token_sha256 FROM api_users WHERE name = ANY($1)', [userEvents.map((e) => e.facet)]);
        const hashes = new Map(rows.map((r) => [r.name, r.token_sha256]));
        for (const e of userEvents) {
          const hash = hashes.get(e.facet);
          if (hash !== undefined) values.set(e.rev, hash);
        }
      }
      return { events, values };
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.feeds].map((feed) => feed.close()));
    await this.pool.end();
  }
}

/** Inserts events numbered under the revision lock, with the NOTIFY of the last one, in one statement. */
async function insertEvents(client: pg.PoolClient, events: ShoalEvent[]): Promise<void> {
  await client.query(
    `WITH inserted AS (
       INSERT INTO events (rev, at, node_id, kind, facet, old, new, detail, writer)
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
     )
     SELECT pg_notify('${EVENTS_CHANNEL}', $10)`,
    [
      events.map((e) => e.rev),
      events.map((e) => e.at),
      events.map((e) => e.nodeId),
      events.map((e) => e.kind),
      events.map((e) => e.facet),
      events.map((e) => e.old),
      events.map((e) => e.new),
      events.map((e) => e.detail),
      events.map((e) => e.writer),
      String(events.at(-1)!.rev),
    ],
  );
}

/** Refuses (FencedError) unless every lease the writer carries is still its own at that epoch; the caller holds the revision lock. */
async function checkFence(client: pg.PoolClient, fence: readonly LeaseClaim[]): Promise<void> {
  const { rows } = await client.query<{ appliance: string; holder: string; epoch: string }>('SELECT appliance, holder, epoch FROM leases WHERE appliance = ANY($1)', [fence.map((c) => c.name)]);
  const current = new Map(rows.map((r) => [r.appliance, { holder: r.holder, epoch: Number(r.epoch) }]));
  for (const claim of fence) {
    const now = current.get(claim.name);
    if (!now || now.holder !== claim.holder || now.epoch !== claim.epoch) throw new FencedError(claim, now);
  }
}

/** A lease row's networks as another appliance wrote them: parsed, not trusted. */
const LeaseNetworksSchema = z.array(z.string());

/** How a lease's holder and epoch read in the event that records a takeover. */
const leaseValue = (holder: string, epoch: number): string => `${holder}#${epoch}`;

/** The lease table (migration 2); README.md says how the leases are used. */
class PostgresLeases implements LeaseStore {
  constructor(private readonly pool: pg.Pool) {}

  acquire(name: string, holder: string, ttlMs: number, own?: { networks: string[]; standbyFor: string | null }): Promise<LeaseClaim | undefined> {
    return transaction(this.pool, 'BEGIN ISOLATION LEVEL READ COMMITTED', async (client) => {
      // Under the revision lock: no commit carrying the old epoch can land after this takeover.
      await client.query('SELECT pg_advisory_xact_lock($1)', [REVISION_LOCK]);
      const row = (await client.query<{ holder: string; epoch: string; expired: boolean }>('SELECT holder, epoch, expires_at <= now() AS expired FROM leases WHERE appliance = $1', [name])).rows[0];
      let epoch: number;
      if (!row) {
        if (!own) return undefined;
        epoch = 1;
        await client.query("INSERT INTO leases (appliance, holder, epoch, expires_at, networks, standby_for) VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond', $4, $5)", [
          name,
          holder,
          ttlMs,
          JSON.stringify(own.networks),
          own.standbyFor,
        ]);
      } else {
        if (!row.expired) return undefined;
        epoch = Number(row.epoch) + 1;
        await client.query("UPDATE leases SET holder = $2, epoch = $3, expires_at = now() + $4 * interval '1 millisecond' WHERE appliance = $1", [name, holder, epoch, ttlMs]);
        if (own) await client.query('UPDATE leases SET networks = $2, standby_for = $3 WHERE appliance = $1', [name, JSON.stringify(own.networks), own.standbyFor]);
      }
      // On record, in the revision order: every appliance's feed hears of the takeover.
      const rev = Number((await client.query<{ rev: string }>('SELECT coalesce(max(rev), 0) AS rev FROM events')).rows[0]!.rev) + 1;
      await insertEvents(client, [
        { rev, at: Date.now(), nodeId: null, kind: 'appliance', facet: `lease/${name}`, old: row ? leaseValue(row.holder, Number(row.epoch)) : null, new: leaseValue(holder, epoch), detail: null, writer: holder },
      ]);
      return { name, holder, epoch };
    });
  }

  async renew(claim: LeaseClaim, ttlMs: number): Promise<boolean> {
    const { rowCount } = await this.pool.query("UPDATE leases SET expires_at = now() + $4 * interval '1 millisecond' WHERE appliance = $1 AND holder = $2 AND epoch = $3", [
      claim.name,
      claim.holder,
      claim.epoch,
      ttlMs,
    ]);
    return rowCount === 1;
  }

  async release(claim: LeaseClaim): Promise<void> {
    await this.pool.query('UPDATE leases SET expires_at = now() WHERE appliance = $1 AND holder = $2 AND epoch = $3', [claim.name, claim.holder, claim.epoch]);
  }

  async list(): Promise<LeaseRow[]> {
    const { rows } = await this.pool.query<{ appliance: string; holder: string; epoch: string; networks: string; standby_for: string | null; expires_in_ms: number }>(
      'SELECT appliance, holder, epoch, networks, standby_for, (extract(epoch FROM expires_at - now()) * 1000)::float8 AS expires_in_ms FROM leases ORDER BY appliance',
    );
    return rows.map((r) => ({ name: r.appliance, holder: r.holder, epoch: Number(r.epoch), networks: LeaseNetworksSchema.parse(JSON.parse(r.networks)), standbyFor: r.standby_for, expiresInMs: Math.round(r.expires_in_ms) }));
  }
}

function eventOf(r: EventRow): ShoalEvent {
  return { rev: Number(r.rev), at: Number(r.at), nodeId: r.node_id, kind: r.kind, facet: r.facet, old: r.old, new: r.new, detail: r.detail, writer: r.writer };
}

/** A connection of its own for LISTEN: a pooled one would be handed to other queries and lose it. */
async function listeningClient(url: string, connectTimeoutMs: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, application_name: FEED_APPLICATION_NAME });
  // Until the feed takes it over, an error only fails connect() or the query below.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(`LISTEN ${EVENTS_CHANNEL}`);
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
}

/**
 * One follower of the log. Invariant: `delivered` is the last revision handed to onBatch, and a
 * read after it runs at start, after every notification announcing more, and after every
 * reconnect; reads run one at a time (a wake-up during a read makes it read once more).
 */
class PostgresFeed implements Feed {
  private client: pg.Client | undefined;
  private closed = false;
  private reading: Promise<void> | undefined;
  private readAgain = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly minMs: number;
  private readonly maxMs: number;
  private backoffMs: number;

  constructor(
    private readonly connect: () => Promise<pg.Client>,
    private readonly read: (afterRev: number) => Promise<FeedBatch>,
    /** The database, for messages (no password). */
    private readonly where: string,
    private delivered: number,
    private readonly onBatch: (batch: FeedBatch) => Promise<void>,
    private readonly options: FollowOptions,
    private readonly onClosed: () => void,
  ) {
    this.minMs = options.reconnect?.minMs ?? 250;
    this.maxMs = options.reconnect?.maxMs ?? 10_000;
    this.backoffMs = this.minMs;
  }

  /** Listens first, then reads: a commit between the two is in the read, one after it is notified. */
  async start(): Promise<void> {
    this.adopt(await this.connect());
    await this.catchUp();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    await this.reading?.catch(() => undefined);
    await client?.end().catch(() => undefined);
    this.onClosed();
  }

  private adopt(client: pg.Client): void {
    this.client = client;
    client.removeAllListeners('error');
    client.on('notification', (message) => this.notified(message));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client));
  }

  private notified(message: pg.Notification): void {
    if (message.channel !== EVENTS_CHANNEL) return;
    const payload = NotifyPayloadSchema.safeParse(message.payload ?? '');
    if (!payload.success) {
      // Someone else NOTIFYing on our channel: not to be trusted, but a read costs nothing wrong.
      this.options.log.warn({ channel: EVENTS_CHANNEL, payload: message.payload }, 'the PostgreSQL feed got a notification that names no revision; reading the log anyway');
    } else if (payload.data <= this.delivered) {
      return;
    }
    void this.catchUp().catch(() => undefined);
  }

  private lost(client: pg.Client, err?: Error): void {
    if (client !== this.client || this.closed) return;
    this.client = undefined;
    void client.end().catch(() => undefined);
    this.options.log.warn(
      { err, afterRev: this.delivered, retryInMs: this.backoffMs },
      'the PostgreSQL feed lost its listening connection; reconnecting, then reading what was committed meanwhile',
    );
    this.options.connection?.(unreachable(this.where, err));
    this.schedule(() => void this.reconnect());
  }

  private async reconnect(): Promise<void> {
    let client: pg.Client;
    try {
      client = await this.connect();
    } catch (err) {
      if (this.closed) return;
      this.backoffMs = Math.min(this.backoffMs * 2, this.maxMs);
      this.options.log.warn({ err, retryInMs: this.backoffMs }, 'the PostgreSQL feed cannot reconnect its listening connection yet');
      this.schedule(() => void this.reconnect());
      return;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.adopt(client);
    this.backoffMs = this.minMs;
    this.options.log.info({ afterRev: this.delivered }, 'the PostgreSQL feed listens again; reading the log from the last revision it handed over');
    this.options.connection?.(undefined);
    void this.catchUp().catch(() => undefined);
  }

  private schedule(then: () => void): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(then, this.backoffMs);
  }

  /** Reads and hands over everything after `delivered`; a failed read is retried after a backoff (and logged). */
  private catchUp(): Promise<void> {
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    const reading = (async () => {
      do {
        this.readAgain = false;
        for (;;) {
          if (this.closed) return;
          const batch = await this.read(this.delivered);
          if (batch.events.length === 0 || this.closed) break;
          await this.onBatch(batch);
          this.delivered = batch.events.at(-1)!.rev;
          if (batch.events.length < FEED_PAGE) break;
        }
      } while (this.readAgain);
    })();
    this.reading = reading.finally(() => {
      this.reading = undefined;
    });
    reading.catch((err: unknown) => {
      if (this.closed) return;
      this.options.log.warn({ err, afterRev: this.delivered, retryInMs: this.backoffMs }, 'the PostgreSQL feed could not read the log; trying again');
      // The listener's own loss schedules a reconnect, which reads; otherwise read again later.
      if (this.client) this.schedule(() => void this.catchUp().catch(() => undefined));
    });
    return this.reading;
  }
}

/** Runs `work` in one transaction on one pooled connection; rolls back on any error. */
/** SQLSTATE classes of a lost or refused connection: 08 (connection exception), 57P (operator intervention: a shutdown). */
const CONNECTION_SQLSTATE = /^(08|57P)/;
/** Socket errors of a server that is down or unreachable (ENOENT: its unix socket is gone). */
const CONNECTION_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** The error of a call (or a feed connection) that could not reach the database `where`. */
function unreachable(where: string, err: Error | undefined): StoreUnavailableError {
  return new StoreUnavailableError(`the PostgreSQL database ${where} cannot be reached: ${err?.message ?? 'the connection ended'}`, { cause: err });
}

/** Whether a pg error says the server could not be reached or dropped the connection, rather than refusing the statement. */
function isConnectionError(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (CONNECTION_SQLSTATE.test(code) || CONNECTION_ERRNO.has(code))) return true;
  // node-postgres's own words for a connection that ended or never came within connectionTimeoutMillis.
  return typeof message === 'string' && /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(message);
}

async function transaction<T>(pool: pg.Pool, begin: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A server shutting down cuts a checked-out connection between statements too: that error is
  // emitted on the client, which the pool listens to only while it is idle. The next statement fails.
  const cut = () => undefined;
  client.on('error', cut);
  try {
    await client.query(begin);
    const result = await work(client);
    await client.query('COMMIT');
    client.off('error', cut);
    client.release();
    return result;
  } catch (err) {
    // A connection that cannot even roll back is broken: the pool drops it rather than reuse it.
    const rolledBack = await client.query('ROLLBACK').then(
      () => true,
      () => false,
    );
    client.off('error', cut);
    client.release(!rolledBack);
    throw err;
  }
}

/**
 * Applies the migrations the database lacks, one transaction each, under an advisory lock so that
 * appliances starting together migrate once. Refuses a database migrated by newer code: this code
 * cannot know what the newer schema means.
 */
async function migrate(pool: pg.Pool, where: string): Promise<void> {
  const latest = MIGRATIONS.at(-1)!.version;
  for (;;) {
    const applied = await transaction(pool, 'BEGIN ISOLATION LEVEL READ COMMITTED', async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
      const current = Number((await client.query<{ version: number }>('SELECT coalesce(max(version), 0) AS version FROM schema_migrations')).rows[0]!.version);
      if (current > latest) {
        throw new SchemaVersionError(`the PostgreSQL database ${where} has schema version ${current}, newer than this Shoal knows (${latest}): run the Shoal release that migrated it, or a newer one`);
      }
      const next = MIGRATIONS.find((m) => m.version > current);
      if (!next) return false;
      await client.query(next.sql);
      await client.query('INSERT INTO schema_migrations (version, description) VALUES ($1, $2)', [next.version, next.description]);
      return true;
    });
    if (!applied) return;
  }
}

/** The key for this database: the key file's, checked against the one the values were sealed with. */
async function secretKey(pool: pg.Pool, keyFile: string, where: string): Promise<SecretKey> {
  const sealedWith = (await pool.query<{ value: string }>("SELECT value FROM store_meta WHERE name = 'secret_key_id'")).rows[0]?.value;
  const otherKey = (): SecretKeyError =>
    new SecretKeyError(`the BMC passwords in the PostgreSQL database ${where} were sealed with another key than ${keyFile}: every appliance on one database needs a copy of the same key file (secrets.keyFile), or the passwords cannot be read`);
  if (sealedWith === undefined) {
    const key = existsSync(keyFile) ? SecretKey.read(keyFile) : SecretKey.create(keyFile);
    // Another appliance may record its key at the same moment: the first row written decides.
    const recorded = (
      await pool.query<{ value: string }>(
        "INSERT INTO store_meta (name, value) VALUES ('secret_key_id', $1) ON CONFLICT (name) DO UPDATE SET value = store_meta.value RETURNING value",
        [key.id],
      )
    ).rows[0]!.value;
    if (recorded !== key.id) throw otherKey();
    return key;
  }
  if (!existsSync(keyFile)) {
    throw new SecretKeyError(`the BMC passwords in the PostgreSQL database ${where} are sealed with a key, but the key file ${keyFile} does not exist: restore it, or copy it from another appliance on this database (secrets.keyFile names where it is kept); a new key could not open them`);
  }
  const key = SecretKey.read(keyFile);
  if (key.id !== sealedWith) throw otherKey();
  return key;
}
