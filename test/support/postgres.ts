// A throwaway PostgreSQL 15 cluster for the tests of the PostgreSQL store: initdb into a temporary
// directory, a server that listens only on a unix socket in that directory (no TCP port to collide
// with anything), and teardown that is bounded: `pg_ctl stop -m immediate`, then SIGKILL of the
// postmaster if it is still there, then the directory goes. initdb and postgres refuse to run as
// root, and CI runs as root: there they run as `nobody` (runuser), owning the directory.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { hasCommand, type Requirement } from './environment.js';

const run = promisify(execFile);

/** Debian's postgresql-15 installs its server binaries here, off PATH. */
export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';
/** The user the server runs as when the tests run as root. */
const UNPRIVILEGED_USER = 'nobody';
/** The cluster's superuser, trusted on the socket (only this directory's owner and root can reach it). */
const SUPERUSER = 'shoal';

const asRoot = (): boolean => process.getuid?.() === 0;

export function postgresRequirement(): Requirement {
  const missing = ['initdb', 'pg_ctl', 'postgres'].filter((b) => !existsSync(join(POSTGRES_BIN, b))).map((b) => `${POSTGRES_BIN}/${b}`);
  if (asRoot() && !hasCommand('runuser')) missing.push('command runuser (to run PostgreSQL unprivileged)');
  return missing.length === 0 ? { ok: true, reason: '' } : { ok: false, reason: `missing ${missing.join(', ')}; install Debian's postgresql (scripts/debian-packages.txt)` };
}

export interface TestPostgres {
  /** The directory holding the cluster and its socket. */
  dir: string;
  /** A new, empty database; resolves with a connection URL for it. */
  createDatabase(): Promise<string>;
  /** Stops the server (bounded) and removes the directory. */
  stop(): Promise<void>;
  /** Shuts the server down as an operator's restart does (`-m fast`: sessions cut, committed work kept); its files stay. */
  shutdown(): Promise<void>;
  /** Starts the server again on the same files and socket, after shutdown(). */
  start(): Promise<void>;
}

/** Runs a PostgreSQL binary, as the unprivileged user when the tests run as root. */
function runPostgresBinary(dir: string, binary: string, args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  const path = join(POSTGRES_BIN, binary);
  const [command, argv] = asRoot() ? ['runuser', ['-u', UNPRIVILEGED_USER, '--', path, ...args]] : [path, args];
  // cwd: the test's own directory may be closed to the unprivileged user, and postgres wants to chdir back to it.
  return run(command, argv, { cwd: dir, timeout: timeoutMs, killSignal: 'SIGKILL' });
}

export async function startPostgres(): Promise<TestPostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-pg-'));
  const data = join(dir, 'data');
  const url = (database: string): string => `postgresql://${SUPERUSER}@/${database}?host=${encodeURIComponent(dir)}`;
  let databases = 0;
  // Durability is not what these tests measure: fsync off keeps them fast on a shared machine.
  const options = `-c listen_addresses='' -c unix_socket_directories='${dir}' -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  // -w: pg_ctl waits until the server accepts connections (bounded by -t), no fixed sleep.
  const start = async (): Promise<void> => void (await runPostgresBinary(dir, 'pg_ctl', ['start', '-D', data, '-l', join(dir, 'server.log'), '-o', options, '-w', '-t', '30'], 40_000));
  const stop = async (): Promise<void> => {
    if (existsSync(join(data, 'postmaster.pid'))) {
      await runPostgresBinary(dir, 'pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '10'], 15_000).catch(() => undefined);
      await killPostmaster(data);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    if (asRoot()) {
      const { stdout } = await run('id', ['-u', UNPRIVILEGED_USER]);
      const { stdout: group } = await run('id', ['-g', UNPRIVILEGED_USER]);
      await chown(dir, Number(stdout.trim()), Number(group.trim()));
    }
    await chmod(dir, 0o755);
    await runPostgresBinary(dir, 'initdb', ['-D', data, '-U', SUPERUSER, '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'], 60_000);
    await start();
  } catch (err) {
    const log = await readFile(join(dir, 'server.log'), 'utf8').catch(() => '');
    await stop();
    throw new Error(`the test PostgreSQL did not start: ${(err as Error).message}${log ? `\nserver log:\n${log}` : ''}`);
  }
  return {
    dir,
    stop,
    start,
    async shutdown() {
      await runPostgresBinary(dir, 'pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', '20'], 30_000);
    },
    async createDatabase(): Promise<string> {
      const name = `test_${++databases}`;
      const admin = new pg.Client({ connectionString: url('postgres') });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return url(name);
    },
  };
}

/** SIGKILL for a postmaster that outlived `pg_ctl stop`, found by the PID in its data directory. */
async function killPostmaster(data: string): Promise<void> {
  const pid = Number((await readFile(join(data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone: what stop asked for.
  }
}

/** Runs one statement on a connection of its own (a client beside the stores under test). */
export async function sql<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}
