// Which role each API call needs, in one table read top to bottom: the first rule whose method and
// path group match decides. Module routes (mounted on ModuleHost.api) fall under the same rules as
// the core's, so a module adds routes without deciding who may call them: reads are for viewers,
// writes for operators, unless a rule here says otherwise.
import type { Role } from '../state/users.js';

export interface RouteRule {
  /** HTTP methods, or '*' for any. */
  methods: readonly string[] | '*';
  /** A path group under /api/v1: the path itself and everything below it ('*' as a segment: any one segment); '*' for any path. */
  path: string;
  role: Role;
  /** What the rule is for, as the README's table says it. */
  why: string;
}

const READ = ['GET', 'HEAD'] as const;

export const ROUTE_RULES: readonly RouteRule[] = [
  { methods: '*', path: '/users', role: 'admin', why: 'users and their tokens: listing them too' },
  { methods: READ, path: '/profiles', role: 'operator', why: 'profiles: their user-data and files may hold secrets' },
  { methods: READ, path: '/nodes/*/config', role: 'operator', why: "a node's effective configuration: the same user-data and files" },
  { methods: READ, path: '*', role: 'viewer', why: 'every read: nodes, plans, graph, events, inventory (no secrets), rollouts, images, agents, discovered machines, metrics' },
  { methods: '*', path: '*', role: 'operator', why: 'every write: nodes, desired state, power, retry, freeze/thaw, inventory import, rollouts, images, discovered machines' },
];

/** The role a call needs; `path` is relative to /api/v1 (`/metrics`, outside it, is a read like any other). */
export function requiredRole(method: string, path: string): Role {
  const upper = method.toUpperCase();
  const rule = ROUTE_RULES.find((r) => (r.methods === '*' || r.methods.includes(upper)) && inGroup(path, r.path));
  // The last rule matches every call; the fallback is for a table edited without one.
  return rule?.role ?? 'admin';
}

function inGroup(path: string, group: string): boolean {
  if (group === '*') return true;
  const want = group.split('/');
  const have = path.split('/');
  return have.length >= want.length && want.every((segment, i) => segment === '*' || segment === have[i]);
}
