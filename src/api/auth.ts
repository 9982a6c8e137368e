// Who is calling and whether they may: the bearer token names a user (src/state/users.ts), and the
// route table (roles.ts) says which role the call needs. Both run before any route, the modules'
// included, so no handler checks either itself; handlers ask `userOf(req)` only to name the writer.
import type { NextFunction, Request, Response } from 'express';
import type { User, UserDirectory } from '../state/users.js';
import { roleAllows } from '../state/users.js';
import { sendProblem } from './problem.js';
import { requiredRole } from './roles.js';

const callers = new WeakMap<Request, User>();

/** The user whose token this request carried; only after `authenticate`. */
export function userOf(req: Request): User {
  const user = callers.get(req);
  if (!user) throw new Error(`${req.method} ${req.originalUrl} was routed past authentication`);
  return user;
}

/** Bearer token to user. The event stream also takes `?access_token=` (EventSource cannot set headers). */
export function authenticate(users: UserDirectory) {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.header('authorization');
    const presented = header?.startsWith('Bearer ') ? header.slice(7).trim() : typeof req.query.access_token === 'string' ? req.query.access_token : undefined;
    if (presented === undefined || presented === '') {
      res.setHeader('www-authenticate', 'Bearer realm="shoal"');
      return sendProblem(res, 401, 'Unauthorized', 'this call needs "Authorization: Bearer <token>": a user\'s token (shoal user add), or the first admin\'s in the data directory, file api-token');
    }
    const user = users.authenticate(presented);
    if (!user) {
      res.setHeader('www-authenticate', 'Bearer realm="shoal", error="invalid_token"');
      return sendProblem(res, 401, 'Unauthorized', 'the bearer token is no user\'s token on this appliance (removed, or never made here)');
    }
    callers.set(req, user);
    next();
  };
}

/** Refuses a call past the caller's role, with 403 naming the role it needs and the role the caller has. Mounted at /api/v1 (or for /metrics at the root). */
export function authorize() {
  return (req: Request, res: Response, next: NextFunction) => {
    const user = userOf(req);
    const needs = requiredRole(req.method, req.path);
    if (roleAllows(user.role, needs)) return next();
    sendProblem(res, 403, 'Forbidden', `${req.method} ${req.baseUrl}${req.path} needs role ${needs}; user ${user.name} has role ${user.role}`, { needs, has: user.role });
  };
}
