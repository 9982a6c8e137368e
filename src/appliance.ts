// One appliance: the store, the cluster state, the modules named in the configuration, the engine
// that drives them, and the HTTP face (operator API, module routes, metrics).
import { mkdirSync, readFileSync, writeFileSync, existsSync, rmSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Logger } from 'pino';
import type { ShoalConfig } from './config.js';
import { createLogger } from './log.js';
import { SqliteStore } from './state/sqlite-store.js';
import { ClusterState } from './state/cluster-state.js';
import { UserDirectory } from './state/users.js';
import { Engine } from './engine/engine.js';
import { DesiredVocabulary } from './engine/desired.js';
import { standardFacets } from './facets/standard.js';
import type { ModuleHost, ShoalModule } from './engine/module.js';
import { createApiApp } from './api/app.js';
import { createWebRouter } from './api/web.js';
import { ServiceRegistry } from './contracts/services.js';
import { runBounded } from './deadline.js';

export interface ApplianceOptions {
  /** Modules built by the caller (tests); otherwise they are loaded from the configuration. */
  modules?: ShoalModule[];
  log?: Logger;
}

export class Appliance {
  private constructor(
    readonly config: ShoalConfig,
    readonly log: Logger,
    readonly store: SqliteStore,
    readonly state: ClusterState,
    readonly engine: Engine,
    readonly modules: ShoalModule[],
    readonly token: string,
    readonly server: Server,
    /** The same API on a unix socket (config api.socket), for local tools and port forwarders. */
    readonly socketServer: Server | undefined,
  ) {}

  static async start(config: ShoalConfig, options: ApplianceOptions = {}): Promise<Appliance> {
    const log = options.log ?? createLogger(config.log.level);
    mkdirSync(config.dataDir, { recursive: true, mode: 0o750 });
    const token = apiToken(config.dataDir);
    const modules = options.modules ?? (await loadModules(config));
    // The standard facets and those the modules declare: what the engine plans over and operators may desire.
    const definitions = [...standardFacets, ...modules.flatMap((m) => m.facets ?? [])];
    const desired = new DesiredVocabulary(definitions);
    const store = new SqliteStore(join(config.dataDir, 'shoal.db'), { keyFile: config.secrets.keyFile ?? join(config.dataDir, 'secret.key') });
    const state = await ClusterState.open(store, { checkDesired: desired.check });
    state.on('error', (err) => log.error({ err }, 'committing observations failed'));
    const users = new UserDirectory(state);
    // The first-start token is the first admin's, so setups from before users keep their token.
    if (users.size === 0) await users.add('admin', 'admin', 'appliance', token);
    const engine = new Engine(state, { definitions, desired }, modules, config.engine, log);
    log.info({ states: engine.lint.states, edges: engine.lint.edges, facets: engine.graph.facets }, 'facet graph composed and linted');

    const app = express();
    app.disable('x-powered-by');
    const services = new ServiceRegistry();
    const moduleApis: express.Router[] = [];
    for (const module of modules) {
      const router = express.Router();
      const api = express.Router();
      moduleApis.push(api);
      const host: ModuleHost = {
        nodes: () => state.list(),
        node: (id) => state.node(id),
        byMac: (mac) => state.byMac(mac),
        desired: (id) => state.desired(id),
        observed: (id) => state.observed(id),
        bmcPassword: (id) => state.bmcPassword(id),
        observe: (id, facet, value, detail) => state.observe(id, facet, value, module.name, detail),
        onNodeChange: (listener) => {
          state.on('node', listener);
          return () => state.off('node', listener);
        },
        log: log.child({ module: module.name }),
        dataDir: join(config.dataDir, 'modules', module.name),
        http: router,
        api,
        services,
        metrics: engine.metrics.registry,
      };
      mkdirSync(host.dataDir, { recursive: true });
      await module.start?.(host);
      app.use(router);
    }
    const modulePaths = Object.assign({}, ...modules.map((m) => m.openapi ?? {})) as Record<string, Record<string, unknown>>;
    app.use(createApiApp({ state, engine, users, log, moduleApis, modulePaths }));
    app.use(createWebRouter());

    const server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.api.port, config.api.listen, () => resolve(s));
      s.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'EADDRINUSE' ? new Error(`API port ${config.api.listen}:${config.api.port} is already in use`) : err),
      );
    });
    let socketServer: Server | undefined;
    if (config.api.socket) {
      const path = config.api.socket;
      rmSync(path, { force: true }); // left by an appliance that was killed
      socketServer = await new Promise<Server>((resolve, reject) => {
        const s = app.listen(path, () => resolve(s));
        s.once('error', (err) => reject(new Error(`cannot listen on API socket ${path}: ${err.message}`)));
      });
      chmodSync(path, 0o660);
    }
    engine.start();
    const appliance = new Appliance(config, log, store, state, engine, modules, token, server, socketServer);
    log.info({ url: appliance.url, nodes: state.size, revision: state.revision }, 'appliance started');
    return appliance;
  }

  get url(): string {
    const address = this.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  }

  /**
   * Stops the engine, the API servers, the modules (last started, first stopped) and the store,
   * each within its own deadline, so one that hangs neither blocks the rest nor the caller.
   * Resolves with what overran or failed (also logged); empty when everything stopped cleanly.
   */
  async stop(): Promise<string[]> {
    const closeServer = (server: Server) => () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    };
    const problems = await runBounded([
      ['the engine to stop', 5_000, () => this.engine.stop()],
      ...[this.server, this.socketServer].filter((s): s is Server => s !== undefined).map((server, i) => [i === 0 ? 'the API server to close' : 'the API socket to close', 5_000, closeServer(server)] as const),
      ...[...this.modules].reverse().map((module) => [`module ${module.name} to stop`, 10_000, () => module.stop?.()] as const),
      ['the observations to be committed', 10_000, () => this.state.flush()],
      ['the store to close', 5_000, () => this.store.close()],
    ]);
    for (const problem of problems) this.log.warn({ problem }, 'stopping the appliance: a step did not finish');
    return problems;
  }
}

/** The first admin's bearer token: made on first start, kept in the data directory. */
function apiToken(dataDir: string): string {
  const path = join(dataDir, 'api-token');
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  return token;
}

async function loadModules(config: ShoalConfig): Promise<ShoalModule[]> {
  const modules: ShoalModule[] = [];
  for (const entry of config.modules) {
    let factory: { createModule?: (options: Record<string, unknown>) => ShoalModule };
    try {
      factory = await import(new URL(`../modules/${entry.name}/index.js`, import.meta.url).href);
    } catch (err) {
      throw new Error(`module "${entry.name}" cannot be loaded: ${(err as Error).message}`);
    }
    if (typeof factory.createModule !== 'function') throw new Error(`module "${entry.name}" exports no createModule`);
    try {
      modules.push(factory.createModule(entry.options));
    } catch (err) {
      throw new Error(`module "${entry.name}" rejected its options: ${(err as Error).message}`);
    }
  }
  return modules;
}
