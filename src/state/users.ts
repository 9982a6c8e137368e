// The API's users: a name, a role, and a bearer token of which only a hash is kept. They live in the
// event log as `user` records (so they survive restarts and their changes have a writer), with the
// token's hash beside the log rather than in it (src/state/sqlite-store.ts). The API asks this
// directory who a token belongs to; the route table in src/api/roles.ts says what that role may do.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ConflictError, NotFoundError, type ClusterState } from './cluster-state.js';
import type { Fact } from './store.js';

/** In order of what they may do: each role may do everything the roles before it may. */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export function roleAllows(has: Role, needs: Role): boolean {
  return ROLES.indexOf(has) >= ROLES.indexOf(needs);
}

export const UserNameSchema = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,31}$/, 'a user name is 1 to 32 characters: lower-case letters, digits, ".", "_" or "-", starting with a letter');

export interface User {
  name: string;
  role: Role;
  createdAt: number;
  createdBy: string;
}

/** What a `user` record's detail holds: the role. */
const UserDetailSchema = z.object({ role: z.enum(ROLES) });

interface Entry {
  user: User;
  tokenHash: Buffer;
}

/**
 * Tokens are 256 random bits, so one round of SHA-256 is enough to keep them: nobody can guess a
 * preimage of that size, and a slow password hash (bcrypt, scrypt) only protects low-entropy
 * secrets while costing every API call its time.
 */
function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export class UserDirectory {
  private readonly users = new Map<string, Entry>();

  constructor(private readonly state: ClusterState) {
    for (const fact of state.loadedRecords('user')) this.put(fact);
    // Users added or removed through another appliance on the same database.
    state.on('record', ({ kind, key, fact }) => {
      if (kind !== 'user') return;
      if (fact) this.put(fact);
      else this.users.delete(key);
    });
  }

  private put(fact: Fact): void {
    const { role } = UserDetailSchema.parse(JSON.parse(fact.detail ?? '{}'));
    this.users.set(fact.facet, { user: { name: fact.facet, role, createdAt: fact.at, createdBy: fact.writer }, tokenHash: Buffer.from(fact.value, 'hex') });
  }

  get size(): number {
    return this.users.size;
  }

  list(): User[] {
    return [...this.users.values()].map((e) => e.user).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The user a bearer token belongs to. Every user's hash is compared, each in constant time, so the time taken says nothing about which one nearly matched. */
  authenticate(token: string): User | undefined {
    const presented = hashToken(token);
    let found: User | undefined;
    for (const { user, tokenHash } of this.users.values()) {
      if (timingSafeEqual(presented, tokenHash)) found = user;
    }
    return found;
  }

  /** Adds a user with a new token (or the one given: the first-start token); durable when it resolves. The token is returned once and kept nowhere. */
  async add(name: string, role: Role, writer: string, token = newToken()): Promise<{ user: User; token: string }> {
    UserNameSchema.parse(name);
    if (this.users.has(name)) throw new ConflictError(`a user named ${name} already exists`);
    const tokenHash = hashToken(token);
    for (const { user, tokenHash: other } of this.users.values()) {
      if (timingSafeEqual(tokenHash, other)) throw new ConflictError(`that token is already user ${user.name}'s`);
    }
    const user: User = { name, role, createdAt: Date.now(), createdBy: writer };
    this.users.set(name, { user, tokenHash });
    this.state.record('user', null, name, null, tokenHash.toString('hex'), JSON.stringify({ role }), writer);
    await this.state.flush();
    return { user, token };
  }

  /** Removes a user: its token is refused from the moment this is called. The last admin stays, or nobody could manage users. */
  async remove(name: string, writer: string): Promise<void> {
    const entry = this.users.get(name);
    if (!entry) throw new NotFoundError(`no user named "${name}"`);
    if (entry.user.role === 'admin' && this.list().filter((u) => u.role === 'admin').length === 1) {
      throw new ConflictError(`${name} is the last admin; add another admin before removing it`);
    }
    this.users.delete(name);
    this.state.record('user', null, name, entry.tokenHash.toString('hex'), null, JSON.stringify({ role: entry.user.role }), writer);
    await this.state.flush();
  }
}
