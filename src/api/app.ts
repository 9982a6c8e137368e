// The operator API under /api/v1: nodes, desired and observed state, plans, the facet graph, the
// event log and its live stream, inventory import/export, Prometheus metrics. Every call needs the
// bearer token; every body is validated before anything changes. Each group of routes registers
// itself from src/api/routes/; this file puts them behind the token and the problem handler.
import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { Engine } from '../engine/engine.js';
import type { ClusterState } from '../state/cluster-state.js';
import { HttpProblem, problemHandler, sendProblem } from './problem.js';
import { openApiDocument } from './openapi.js';
import type { RouteContext } from './routes/context.js';
import { registerControlRoutes } from './routes/control.js';
import { registerEventRoutes } from './routes/events.js';
import { registerInventoryRoutes } from './routes/inventory.js';
import { registerNodeRoutes } from './routes/nodes.js';
import { registerRolloutRoutes } from './routes/rollouts.js';

export interface ApiDeps {
  state: ClusterState;
  engine: Engine;
  token: string;
  log: Logger;
  /** Operator routes of modules, served under /api/v1 behind the same token. */
  moduleApis?: express.Router[];
  /** The OpenAPI path items of those routes. */
  modulePaths?: Record<string, Record<string, unknown>>;
}

export function createApiApp({ state, engine, token, log, moduleApis = [], modulePaths = {} }: ApiDeps): express.Router {
  const router = express.Router();
  const api = express.Router();

  api.use(authenticate(token));
  api.use(express.json({ limit: '1mb' }));
  api.use(express.text({ type: ['application/yaml', 'text/yaml', 'text/plain'], limit: '16mb' }));

  const ctx: RouteContext = { state, engine };
  registerNodeRoutes(api, ctx);
  registerControlRoutes(api, ctx);
  registerRolloutRoutes(api, ctx);
  registerEventRoutes(api, ctx);
  registerInventoryRoutes(api, ctx);
  api.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument(engine.desired, modulePaths));
  });

  for (const moduleApi of moduleApis) api.use(moduleApi);
  api.use((req, _res, next) => next(new HttpProblem(404, 'Not found', `no API route ${req.method} ${req.path}`)));
  api.use(problemHandler(log));

  router.use('/api/v1', api);
  router.get('/metrics', authenticate(token), async (_req, res, next) => {
    try {
      res.type(engine.metrics.registry.contentType).send(await engine.metrics.registry.metrics());
    } catch (err) {
      next(err);
    }
  });
  return router;
}

/** Bearer-token check in constant time. The event stream also takes `?access_token=` (EventSource cannot set headers). */
function authenticate(token: string) {
  const expected = Buffer.from(token);
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.header('authorization');
    const presented = header?.startsWith('Bearer ') ? header.slice(7).trim() : typeof req.query.access_token === 'string' ? req.query.access_token : undefined;
    if (presented === undefined) {
      res.setHeader('www-authenticate', 'Bearer realm="shoal"');
      return sendProblem(res, 401, 'Unauthorized', 'this call needs "Authorization: Bearer <token>"; the token is in the data directory, file api-token');
    }
    const given = Buffer.from(presented);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      res.setHeader('www-authenticate', 'Bearer realm="shoal", error="invalid_token"');
      return sendProblem(res, 401, 'Unauthorized', 'the bearer token is not this appliance\'s token');
    }
    next();
  };
}
