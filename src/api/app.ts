// The operator API under /api/v1: nodes, desired and observed state, plans, the facet graph, the
// event log and its live stream, inventory import/export, profiles and node configuration, users,
// Prometheus metrics. Every call needs a user's bearer token and the role the route table
// (roles.ts) asks for; every body is validated before anything changes. Each group of routes registers itself from src/api/routes/;
// this file puts them, and the modules' routes, behind the token, the roles and the problem handler.
import express from 'express';
import type { Logger } from 'pino';
import type { Engine } from '../engine/engine.js';
import type { ClusterState } from '../state/cluster-state.js';
import type { ProfileDirectory } from '../state/profiles.js';
import type { UserDirectory } from '../state/users.js';
import type { Ownership } from '../state/ownership.js';
import { authenticate, authorize } from './auth.js';
import { HttpProblem, problemHandler } from './problem.js';
import { openApiDocument } from './openapi.js';
import type { RouteContext } from './routes/context.js';
import { registerControlRoutes } from './routes/control.js';
import { registerEventRoutes } from './routes/events.js';
import { registerInventoryRoutes } from './routes/inventory.js';
import { registerNodeRoutes } from './routes/nodes.js';
import { registerProfileRoutes } from './routes/profiles.js';
import { registerRolloutRoutes } from './routes/rollouts.js';
import { registerUserRoutes } from './routes/users.js';
import { registerApplianceRoutes } from './routes/appliances.js';

export interface ApiDeps {
  state: ClusterState;
  engine: Engine;
  users: UserDirectory;
  profiles: ProfileDirectory;
  ownership: Ownership;
  log: Logger;
  /** Operator routes of modules, served under /api/v1 behind the same tokens and role rules. */
  moduleApis?: express.Router[];
  /** The OpenAPI path items of those routes. */
  modulePaths?: Record<string, Record<string, unknown>>;
}

export function createApiApp({ state, engine, users, profiles, ownership, log, moduleApis = [], modulePaths = {} }: ApiDeps): express.Router {
  const router = express.Router();
  const api = express.Router();

  api.use(authenticate(users), authorize());
  // While the store cannot be reached, nothing an operator writes could be made durable: refused
  // before it changes memory. Reads go on from memory.
  api.use((req, res, next) => {
    const unavailable = req.method === 'GET' || req.method === 'HEAD' ? undefined : state.storeUnavailable;
    if (!unavailable) return next();
    res.setHeader('Retry-After', '5');
    next(new HttpProblem(503, 'State store unavailable', `${unavailable.message}. This ${req.method} was refused and changed nothing; reads are served from memory meanwhile`));
  });
  api.use(express.json({ limit: '1mb' }));
  api.use(express.text({ type: ['application/yaml', 'text/yaml', 'text/plain'], limit: '16mb' }));

  const ctx: RouteContext = { state, engine, profiles };
  registerNodeRoutes(api, ctx);
  registerControlRoutes(api, ctx);
  registerRolloutRoutes(api, ctx);
  registerProfileRoutes(api, ctx);
  registerEventRoutes(api, ctx);
  registerInventoryRoutes(api, ctx);
  registerUserRoutes(api, users);
  registerApplianceRoutes(api, ownership);
  api.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument(engine.desired, modulePaths));
  });

  for (const moduleApi of moduleApis) api.use(moduleApi);
  api.use((req, _res, next) => next(new HttpProblem(404, 'Not found', `no API route ${req.method} ${req.path}`)));
  api.use(problemHandler(log));

  router.use('/api/v1', api);
  router.get('/metrics', authenticate(users), authorize(), async (_req, res, next) => {
    try {
      res.type(engine.metrics.registry.contentType).send(await engine.metrics.registry.metrics());
    } catch (err) {
      next(err);
    }
  });
  return router;
}
