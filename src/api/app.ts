// The operator API under /api/v1: nodes, desired and observed state, plans, the facet graph, the
// event log and its live stream, inventory import/export, Prometheus metrics. Every call needs the
// bearer token; every body is validated before anything changes.
import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
import { nodeSpecFromInput, parseSelector, formatBmcUrl, type NodeRecord } from '../domain/node.js';
import type { Engine } from '../engine/engine.js';
import { rolloutInputSchema, RolloutRejected } from '../engine/rollout.js';
import type { ClusterState } from '../state/cluster-state.js';
import { exportInventory, parseInventory } from '../state/inventory.js';
import type { ShoalEvent } from '../state/store.js';
import { HttpProblem, problemHandler, sendProblem } from './problem.js';
import { openApiDocument } from './openapi.js';

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

const EventQuerySchema = z
  .object({
    after: z.coerce.number().int().min(0).default(0),
    node: z.string().optional(),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  })
  .strict();

const ListQuerySchema = z
  .object({
    selector: z.string().optional(),
    phase: z.enum(['converged', 'converging', 'failed', 'frozen', 'blocked']).optional(),
  })
  .strict();

export function createApiApp({ state, engine, token, log, moduleApis = [], modulePaths = {} }: ApiDeps): express.Router {
  const router = express.Router();
  const api = express.Router();
  const executor = engine.executor;

  api.use(authenticate(token));
  api.use(express.json({ limit: '1mb' }));
  api.use(express.text({ type: ['application/yaml', 'text/yaml', 'text/plain'], limit: '16mb' }));

  const nodeView = (node: NodeRecord) => {
    const status = executor.status(node.id);
    return {
      id: node.id,
      name: node.name,
      macs: node.macs,
      bmc: formatBmcUrl(node.bmc),
      arch: node.arch,
      firmware: node.firmware,
      ...(node.ipv4 ? { ipv4: node.ipv4 } : {}),
      labels: node.labels,
      frozen: state.isFrozen(node.id),
      desired: state.desired(node.id),
      observed: state.observed(node.id),
      phase: status.phase,
      ...(status.reason ? { reason: status.reason } : {}),
      ...(status.step ? { step: status.step } : {}),
      ...(status.lastError ? { lastError: status.lastError } : {}),
    };
  };

  api.get('/nodes', (req, res) => {
    const query = ListQuerySchema.parse(queryOf(req));
    const selects = query.selector ? parseSelector(query.selector) : () => true;
    const nodes = state
      .list()
      .filter((n) => selects(n.labels))
      .map(nodeView)
      .filter((v) => !query.phase || v.phase === query.phase);
    res.json({ nodes, counts: executor.phaseCounts(), revision: state.revision });
  });

  api.post('/nodes', async (req, res) => {
    const { spec, bmcPassword } = nodeSpecFromInput(req.body);
    const [node] = await state.addNodes([{ spec, ...(bmcPassword !== undefined ? { bmcPassword } : {}) }], writerOf(req));
    res.status(201).location(`/api/v1/nodes/${node!.id}`).json(nodeView(node!));
  });

  api.get('/nodes/:ref', (req, res) => {
    res.json(nodeView(state.resolve(req.params.ref)));
  });

  api.put('/nodes/:ref', async (req, res) => {
    const current = state.resolve(req.params.ref);
    const { spec, bmcPassword } = nodeSpecFromInput(req.body);
    res.json(nodeView(await state.updateNode(current.id, spec, bmcPassword, writerOf(req))));
  });

  api.delete('/nodes/:ref', async (req, res) => {
    await state.removeNode(state.resolve(req.params.ref).id, writerOf(req));
    res.status(204).end();
  });

  api.get('/nodes/:ref/desired', (req, res) => {
    res.json(state.desired(state.resolve(req.params.ref).id));
  });

  api.patch('/nodes/:ref/desired', async (req, res) => {
    const node = state.resolve(req.params.ref);
    const patch = engine.desired.parsePatch(req.body);
    await state.setDesired(node.id, patch, writerOf(req));
    res.json(nodeView(node));
  });

  api.get('/nodes/:ref/observed', (req, res) => {
    res.json(state.observed(state.resolve(req.params.ref).id));
  });

  api.get('/nodes/:ref/plan', (req, res) => {
    const node = state.resolve(req.params.ref);
    const status = executor.status(node.id);
    res.json({
      node: node.name,
      phase: status.phase,
      ...(status.reason ? { reason: status.reason } : {}),
      ...(status.step ? { current: status.step } : {}),
      failures: status.failures,
      ...(status.lastError ? { lastError: status.lastError } : {}),
      from: status.plan.from,
      target: status.plan.target,
      reachable: status.plan.reachable,
      steps: status.plan.steps,
    });
  });

  api.post('/nodes/:ref/retry', (req, res) => {
    const node = state.resolve(req.params.ref);
    executor.retry(node.id);
    res.json(nodeView(node));
  });

  for (const [path, frozen] of [['freeze', true], ['thaw', false]] as const) {
    api.post(`/nodes/:ref/${path}`, async (req, res) => {
      const node = state.resolve(req.params.ref);
      await state.setFrozen(node.id, frozen, writerOf(req));
      res.json(nodeView(node));
    });
    api.post(`/${path}`, async (req, res) => {
      await state.setFrozen(null, frozen, writerOf(req));
      res.json({ frozen: state.isFrozen() });
    });
  }

  // Rolling changes over a label selector, at most maxUnavailable nodes at a time (src/engine/rollout.ts).
  api.post('/rollouts', async (req, res) => {
    const input = rolloutInputSchema(engine.desired).parse(req.body);
    try {
      const rollout = await engine.rollouts.create(input, writerOf(req));
      res.status(201).location(`/api/v1/rollouts/${rollout.id}`).json({ ...rollout, revision: state.revision });
    } catch (err) {
      if (err instanceof RolloutRejected) throw new HttpProblem(422, 'Nothing to roll out', err.message);
      throw err;
    }
  });

  api.get('/rollouts', (_req, res) => {
    res.json({ rollouts: engine.rollouts.list(), revision: state.revision });
  });

  api.get('/rollouts/:id', (req, res) => {
    res.json({ ...engine.rollouts.get(req.params.id), revision: state.revision });
  });

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    api.post(`/rollouts/:id/${action}`, async (req, res) => {
      res.json(await engine.rollouts[action](req.params.id, writerOf(req)));
    });
  }

  api.get('/graph', (_req, res) => {
    const g = engine.graph;
    res.json({
      facets: engine.definitions.map((d) => ({ name: d.name, values: d.values, failureValues: d.failureValues, steps: Object.keys(d.steps) })),
      steps: g.steps.map((s) => ({ name: s.name, facet: s.facet, kind: s.kind, confirms: s.confirms, timeoutMs: s.timeoutMs, failsTo: s.failsTo, explain: s.explain })),
      states: engine.lint.states,
      edges: g.states.flatMap((vector, i) => (g.settled[i] === i ? g.edges[i]!.map((e) => ({ from: g.describe(vector), step: e.step, to: g.describe(g.states[e.to]!) })) : [])),
      lint: engine.lint.problems,
    });
  });

  api.get('/events', async (req, res) => {
    const query = EventQuerySchema.parse(queryOf(req));
    const nodeId = query.node ? state.resolve(query.node).id : undefined;
    const events = await state.events({ afterRev: query.after, limit: query.limit, ...(nodeId ? { nodeId } : {}) });
    res.json({ events, revision: state.revision });
  });

  api.get('/events/stream', async (req, res) => {
    const lastId = req.header('last-event-id') ?? (typeof req.query.after === 'string' ? req.query.after : '0');
    const after = Number(lastId);
    if (!Number.isInteger(after) || after < 0) throw new HttpProblem(400, 'Invalid Last-Event-ID', `"${lastId}" is not an event revision`);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': shoal event stream\n\n');
    let sent = after;
    const send = (events: ShoalEvent[]) => {
      let chunk = '';
      for (const e of events) {
        if (e.rev <= sent) continue;
        chunk += `id: ${e.rev}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`;
        sent = e.rev;
      }
      if (chunk) res.write(chunk);
    };
    // Live events queue up while the backlog is replayed, so none fall between the two.
    const live: ShoalEvent[][] = [];
    let replaying = true;
    const onEvents = (events: ShoalEvent[]) => (replaying ? live.push(events) : send(events));
    state.on('events', onEvents);
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    req.on('close', () => {
      clearInterval(keepAlive);
      state.off('events', onEvents);
    });
    for (;;) {
      const page = await state.events({ afterRev: sent, limit: 5000 });
      send(page);
      if (page.length < 5000) break;
    }
    replaying = false;
    for (const events of live.splice(0)) send(events);
  });

  api.post('/inventory', async (req, res) => {
    if (typeof req.body !== 'string') throw new HttpProblem(415, 'Unsupported body', 'send the inventory as YAML (content-type application/yaml)');
    const rows = parseInventory(req.body, (raw) => engine.desired.parsePatch(raw));
    const writer = writerOf(req);
    const nodes = await state.addNodes(
      rows.map((r) => ({ spec: r.spec, ...(r.bmcPassword !== undefined ? { bmcPassword: r.bmcPassword } : {}) })),
      writer,
    );
    for (const [i, row] of rows.entries()) if (row.desired) await state.setDesired(nodes[i]!.id, row.desired, writer);
    res.status(201).json({ imported: nodes.length, nodes: nodes.map((n) => ({ id: n.id, name: n.name })) });
  });

  api.get('/inventory', (_req, res) => {
    res.type('application/yaml').send(exportInventory(state.list().map((node) => ({ node, desired: state.desired(node.id) }))));
  });

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

/** The query without the token, so strict schemas still catch misspelt parameters. */
function queryOf(req: Request): Record<string, unknown> {
  const { access_token: _token, ...rest } = req.query as Record<string, unknown>;
  return rest;
}

function writerOf(req: Request): string {
  return `operator:${req.header('x-shoal-operator') ?? 'api'}`;
}
