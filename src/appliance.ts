// One appliance: the store, the cluster state, the modules named in the configuration, the engine
// that drives them, and the HTTP faces: the operator API, dashboard and metrics (HTTPS when
// api.tls is on), and the routes nodes fetch, always plain HTTP (on the API's listener when TLS is
// off and no boot listener is configured, on a listener of their own otherwise).
import { mkdirSync, readFileSync, writeFileSync, existsSync, rmSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Logger } from 'pino';
import { bootListener, type ShoalConfig } from './config.js';
import { createLogger } from './log.js';
import { SqliteStore } from './state/sqlite-store.js';
import { PostgresStore } from './state/postgres-store.js';
import { FencedError, type StateStore } from './state/store.js';
import { LeaseOwnership, SoleOwnership, type Ownership } from './state/ownership.js';
import { ClusterState } from './state/cluster-state.js';
import { UserDirectory } from './state/users.js';
import { Engine } from './engine/engine.js';
import { DesiredVocabulary } from './engine/desired.js';
import { standardFacets } from './facets/standard.js';
import type { ModuleHost, ShoalModule } from './engine/module.js';
import { createApiApp } from './api/app.js';
import { createWebRouter } from './api/web.js';
import { ServiceRegistry } from './contracts/services.js';
import { ProfileDirectory } from './state/profiles.js';
import { runBounded } from './deadline.js';
import { loadApiCertificate, type ApiCertificate } from './api/tls.js';

export interface ApplianceOptions {
  /** Modules built by the caller (tests); otherwise they are loaded from the configuration. */
  modules?: ShoalModule[];
  log?: Logger;
}

export class Appliance {
  private constructor(
    readonly config: ShoalConfig,
    readonly log: Logger,
    readonly store: StateStore,
    readonly state: ClusterState,
    readonly profiles: ProfileDirectory,
    readonly engine: Engine,
    /** Which nodes this appliance acts on: all of them on SQLite, those of the leases it holds on PostgreSQL. */
    readonly ownership: Ownership,
    readonly modules: ShoalModule[],
    readonly token: string,
    /** The operator API (and the node routes too when there is no boot listener). */
    readonly server: Server,
    /** The same API on a unix socket (config api.socket), for local tools and port forwarders. */
    readonly socketServer: Server | undefined,
    /** The node routes' own plain-HTTP listener (config boot, or api.tls on). */
    readonly bootServer: Server | undefined,
    /** The API's certificate when api.tls is on. */
    readonly certificate: ApiCertificate | undefined,
  ) {}

  static async start(config: ShoalConfig, options: ApplianceOptions = {}): Promise<Appliance> {
    const log = options.log ?? createLogger(config.log.level);
    mkdirSync(config.dataDir, { recursive: true, mode: 0o750 });
    const token = apiToken(config.dataDir);
    // Before the store opens or any module starts: a bad certificate stops the start with nothing to undo.
    const certificate = config.api.tls === 'off' ? undefined : await loadApiCertificate(config.api.tls, config.dataDir, config.api.listen);
    const modules = options.modules ?? (await loadModules(config));
    // The standard facets and those the modules declare: what the engine plans over and operators may desire.
    // Modules that drive the same facet (the agent and the sim both drive disk) declare the same definition: kept once.
    const definitions = [...new Set([...standardFacets, ...modules.flatMap((m) => m.facets ?? [])])];
    const desired = new DesiredVocabulary(definitions);
    const store = await openStore(config, log);
    // A store other appliances write to has a feed: their events reach this appliance's memory, engine and event stream.
    const identity = config.appliance;
    // Made once the state is open; every commit carries the leases it holds by then.
    let ownership: Ownership | undefined;
    const state = await ClusterState.open(store, {
      checkDesired: desired.check,
      ...(store.follow ? { follow: { log: log.child({ component: 'feed' }) } } : {}),
      ...(store.leases ? { enrolledBy: identity.name, fence: () => ownership?.fence() ?? [] } : {}),
    });
    state.on('error', (err) => {
      if (err instanceof FencedError) ownership?.fenced(err);
      log.error({ err }, 'committing observations failed');
    });
    state.on('store', (err) => {
      if (err) log.error({ err }, 'the state store cannot be reached: serving reads from memory, refusing operator writes (503), keeping what is observed until it answers');
      else log.warn('the state store answers again: what was kept is committed, and operator writes are accepted');
    });
    // Owns nothing until started, just before the engine: the start's long synchronous work (the
    // facet graph's lint) cannot then eat into the first lease's time.
    ownership = store.leases ? new LeaseOwnership(state, store.leases, identity, log.child({ component: 'leases', appliance: identity.name })) : new SoleOwnership(state, identity);
    const users = new UserDirectory(state);
    const profiles = new ProfileDirectory(state);
    // The first-start token is the first admin's, so setups from before users keep their token.
    if (users.size === 0) await users.add('admin', 'admin', 'appliance', token);
    const engine = new Engine(state, { definitions, desired }, modules, config.engine, log, ownership);
    log.info({ states: engine.lint.states, edges: engine.lint.edges, facets: engine.graph.facets }, 'facet graph composed and linted');

    const boot = bootListener(config);
    if (!certificate && !['127.0.0.1', '::1', 'localhost'].includes(config.api.listen)) {
      log.warn({ listen: config.api.listen }, 'api.tls is off and the API listens beyond loopback: tokens and BMC passwords cross the network in clear');
    }

    // What nodes fetch (module routes) and what operators use (API, metrics, dashboard).
    const nodeApp = express();
    nodeApp.disable('x-powered-by');
    const operatorApp = express();
    operatorApp.disable('x-powered-by');
    const services = new ServiceRegistry();
    services.provide('ownership', ownership);
    services.provide('nodeConfig', {
      boot: (id) => {
        const node = state.node(id);
        if (!node) return undefined;
        const { settings, sources } = profiles.effective(node);
        const { image, kernelArgs = [], secureBoot, kexec } = settings;
        return { ...(image ? { image } : {}), kernelArgs, ...(secureBoot ? { secureBoot } : {}), kexec: { allowed: kexec !== false, ...(sources.kexec ? { setBy: sources.kexec } : {}) } };
      },
      seed: (id) => {
        const node = state.node(id);
        return node && profiles.seed(node);
      },
      disk: (id) => {
        const node = state.node(id);
        if (!node) return undefined;
        const { rootDevice, diskErase = 'quick' } = profiles.effective(node).settings;
        return { ...(rootDevice ? { rootDevice } : {}), erase: diskErase };
      },
    });
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
      nodeApp.use(router);
    }
    const modulePaths = Object.assign({}, ...modules.map((m) => m.openapi ?? {})) as Record<string, Record<string, unknown>>;
    operatorApp.use(createApiApp({ state, engine, users, profiles, ownership, log, moduleApis, modulePaths }));
    operatorApp.use(createWebRouter());
    // Without a boot listener one plain listener answers both, node routes first as they always were.
    const apiApp = boot ? operatorApp : express().disable('x-powered-by').use(nodeApp, operatorApp);

    const apiServer = certificate ? createHttpsServer({ cert: certificate.cert, key: certificate.key }, apiApp as RequestListener) : createHttpServer(apiApp);
    const server = await listen(apiServer, `API port ${config.api.listen}:${config.api.port}`, config.api.port, config.api.listen);
    const bootServer = boot ? await listen(createHttpServer(nodeApp), `boot port ${boot.listen}:${boot.port} (node routes)`, boot.port, boot.listen) : undefined;
    let socketServer: Server | undefined;
    if (config.api.socket) {
      const path = config.api.socket;
      rmSync(path, { force: true }); // left by an appliance that was killed
      socketServer = await listen(createHttpServer(apiApp), `API socket ${path}`, path);
      chmodSync(path, 0o660);
    }
    await ownership.start();
    engine.start();
    const appliance = new Appliance(config, log, store, state, profiles, engine, ownership, modules, token, server, socketServer, bootServer, certificate);
    log.info({ appliance: identity.name, url: appliance.url, bootUrl: appliance.bootUrl, fingerprint: certificate?.fingerprint, nodes: state.size, revision: state.revision }, 'appliance started');
    return appliance;
  }

  /** The operator API: https:// when api.tls is on. */
  get url(): string {
    return urlOf(this.server, this.certificate ? 'https' : 'http');
  }

  /** Where nodes fetch scripts, kernels, images and talk to the agent module: always plain HTTP. */
  get bootUrl(): string {
    return this.bootServer ? urlOf(this.bootServer, 'http') : this.url;
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
      ...(
        [
          ['the API server to close', this.server],
          ['the API socket to close', this.socketServer],
          ['the boot server to close', this.bootServer],
        ] satisfies [string, Server | undefined][]
      ).flatMap(([what, server]) => (server ? [[what, 5_000, closeServer(server)] as const] : [])),
      ...[...this.modules].reverse().map((module) => [`module ${module.name} to stop`, 10_000, () => module.stop?.()] as const),
      ['the profile directory to let go of the state', 1_000, () => this.profiles.close()],
      ['the observations to be committed', 10_000, () => this.state.flush()],
      ['the leases to be let go', 5_000, () => this.ownership.stop()],
      ['the feed from the store to stop', 5_000, () => this.state.close()],
      ['the store to close', 5_000, () => this.store.close()],
    ]);
    for (const problem of problems) this.log.warn({ problem }, 'stopping the appliance: a step did not finish');
    return problems;
  }
}

function listen(server: Server, what: string, ...where: [port: number, host: string] | [path: string]): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(err.code === 'EADDRINUSE' ? `${what} is already in use` : `cannot listen on ${what}: ${err.message}`)),
    );
    server.listen(...(where as [number, string]), () => resolve(server));
  });
}

function urlOf(server: Server, scheme: 'http' | 'https'): string {
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `${scheme}://${host}:${address.port}`;
}

/** The first admin's bearer token: made on first start, kept in the data directory. */
/** The store the configuration names; the secret key file is the same for both. */
async function openStore(config: ShoalConfig, log: Logger): Promise<StateStore> {
  const keyFile = config.secrets.keyFile ?? join(config.dataDir, 'secret.key');
  if (config.state.backend === 'sqlite') return new SqliteStore(join(config.dataDir, 'shoal.db'), { keyFile });
  return PostgresStore.open(config.state.url, { keyFile, onIdleError: (err) => log.warn({ err }, 'an idle PostgreSQL connection failed; the pool replaces it') });
}

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
