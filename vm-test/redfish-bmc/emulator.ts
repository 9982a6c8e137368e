// A small Redfish BMC for tests: service root, Systems, ComputerSystem (PowerState,
// Boot override, Reset action), SessionService with X-Auth-Token sessions and HTTP
// Basic auth, ETag/If-Match on the system, and an optional TaskService monitor for
// resets. The behaviours real BMCs differ on are options, so a client can be tested
// against each of them. It binds to 127.0.0.1 only.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import {
  bootOverrideEnabledValues,
  bootOverrideModes,
  bootOverrideTargets,
  noBootOverride,
  type BootOverride,
  type EmulatedMachine,
} from './machine.js';
import { generateSelfSignedCertificate } from './tls.js';

/** The ResetType values this emulator can carry out; a system may advertise a subset. */
export const emulatedResetTypes = [
  'On',
  'ForceOn',
  'ForceOff',
  'GracefulShutdown',
  'GracefulRestart',
  'ForceRestart',
  'PowerCycle',
  'PushPowerButton',
] as const;
export type EmulatedResetType = (typeof emulatedResetTypes)[number];

export interface EmulatedSystemConfig {
  id: string;
  machine: EmulatedMachine;
  /** ResetType values advertised and accepted; all of `emulatedResetTypes` when absent. */
  resetTypes?: readonly EmulatedResetType[];
  /**
   * Optional ComputerSystem properties this system leaves out of its resource ('omit') or
   * reports as null, as some BMCs do. Without BootSourceOverrideMode it also refuses a PATCH
   * that sets the mode (400 PropertyUnknown), and keeps no mode of its own.
   */
  lacks?: Partial<Record<OptionalSystemProperty, 'omit' | 'null'>>;
}

export type OptionalSystemProperty = 'PowerState' | 'BootSourceOverrideMode';

/**
 * - `none`: no ETag, If-Match ignored (BMCs without ETag support).
 * - `optional`: ETag sent; a PATCH with a stale If-Match gets 412.
 * - `required`: as `optional`, and a PATCH without If-Match gets 428.
 */
export type EtagPolicy = 'none' | 'optional' | 'required';

export interface RedfishBmcOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  username: string;
  password: string;
  systems: EmulatedSystemConfig[];
  /** When false, SessionService is disabled and session login answers 405, so clients must use Basic auth. */
  sessions?: boolean;
  etag?: EtagPolicy;
  /** Where reset's allowable values are advertised: inline on the action, or in an ActionInfo resource. */
  resetTypesVia?: 'inline' | 'action-info';
  /**
   * When set, resets answer 202 Accepted with a task monitor; the reset is carried out
   * when the monitor is polled for the (pollsBeforeDone + 1)-th time. Infinity: never.
   */
  resetTask?: { pollsBeforeDone: number };
  /** Serve HTTPS with a self-signed certificate made at start. */
  tls?: boolean;
  /** Called when a PATCH to a system arrives, before its If-Match is checked; lets a test change the system concurrently. */
  beforeSystemPatch?: (systemId: string) => void;
}

export interface RecordedRequest {
  method: string;
  path: string;
  auth: 'none' | 'basic' | 'session';
  ifMatch: string | undefined;
}

export interface RedfishBmc {
  /** Base URL, e.g. `http://127.0.0.1:PORT` (no path). */
  readonly url: string;
  readonly port: number;
  /** Set when serving HTTPS: the self-signed certificate (PEM), for clients that trust it as a CA. */
  readonly certificatePem: string | undefined;
  /** Set when serving HTTPS. */
  readonly certificateFingerprintSha256: string | undefined;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /** Sessions currently open. */
  sessionCount(): number;
  /** Changes a system's ETag as if someone else had modified it. */
  touchSystem(systemId: string): void;
  /** Forgets every session, as a BMC does when sessions time out or it restarts. */
  dropSessions(): void;
  close(): Promise<void>;
}

const serviceRootPath = '/redfish/v1';
const systemsPath = `${serviceRootPath}/Systems`;
const sessionServicePath = `${serviceRootPath}/SessionService`;
const sessionsPath = `${sessionServicePath}/Sessions`;
const taskServicePath = `${serviceRootPath}/TaskService`;
const tasksPath = `${taskServicePath}/Tasks`;
const taskMonitorsPath = `${taskServicePath}/TaskMonitors`;
const maxBodyBytes = 64 * 1024;

const sessionLoginBody = z.object({ UserName: z.string(), Password: z.string() });
const resetBody = z.object({ ResetType: z.string() });
const systemPatchBody = z.strictObject({
  Boot: z.strictObject({
    BootSourceOverrideTarget: z.enum(bootOverrideTargets).optional(),
    BootSourceOverrideEnabled: z.enum(bootOverrideEnabledValues).optional(),
    BootSourceOverrideMode: z.enum(bootOverrideModes).optional(),
  }),
});

interface SystemState {
  config: EmulatedSystemConfig;
  resetTypes: readonly EmulatedResetType[];
  bootOverride: BootOverride;
  /** Bumped on every change the BMC makes or is told about; part of the ETag. */
  revision: number;
}

interface Session {
  id: string;
  token: string;
}

interface Task {
  id: string;
  state: 'Running' | 'Completed' | 'Exception';
  message: string;
  pollsLeft: number;
  run: () => Promise<void>;
  monitorOpen: boolean;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export async function startRedfishBmc(options: RedfishBmcOptions): Promise<RedfishBmc> {
  if (options.systems.length === 0) throw new Error('a Redfish BMC needs at least one system');
  const systems = new Map<string, SystemState>();
  for (const config of options.systems) {
    if (!/^[A-Za-z0-9_-]+$/.test(config.id)) throw new Error(`system id ${JSON.stringify(config.id)} is not a path segment`);
    if (systems.has(config.id)) throw new Error(`duplicate system id ${config.id}`);
    systems.set(config.id, {
      config,
      resetTypes: config.resetTypes ?? emulatedResetTypes,
      bootOverride: noBootOverride,
      revision: 0,
    });
  }
  const sessionsEnabled = options.sessions ?? true;
  const etagPolicy = options.etag ?? 'optional';
  const resetTypesVia = options.resetTypesVia ?? 'inline';
  const sessions = new Map<string, Session>();
  const tasks = new Map<string, Task>();
  const requests: RecordedRequest[] = [];
  let nextSessionId = 1;
  let nextTaskId = 1;

  const certificate = options.tls ? await generateSelfSignedCertificate() : undefined;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      const httpError =
        error instanceof HttpError ? error : new HttpError(500, 'Base.1.8.InternalError', String(error));
      sendError(res, httpError);
    });
  };
  const server: Server = certificate
    ? createHttpsServer({ cert: certificate.certPem, key: certificate.keyPem }, handler)
    : createHttpServer(handler);

  function secretsEqual(given: string, expected: string): boolean {
    const a = createHash('sha256').update(given).digest();
    const b = createHash('sha256').update(expected).digest();
    return timingSafeEqual(a, b);
  }

  function credentialsValid(username: string, password: string): boolean {
    // Both compared, so timing does not tell which one was wrong.
    const userOk = secretsEqual(username, options.username);
    const passwordOk = secretsEqual(password, options.password);
    return userOk && passwordOk;
  }

  function authenticate(req: IncomingMessage): RecordedRequest['auth'] {
    const token = req.headers['x-auth-token'];
    if (typeof token === 'string') {
      for (const session of sessions.values()) if (secretsEqual(token, session.token)) return 'session';
      return 'none';
    }
    const authorization = req.headers.authorization;
    if (authorization?.startsWith('Basic ')) {
      const decoded = Buffer.from(authorization.slice('Basic '.length), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0 && credentialsValid(decoded.slice(0, colon), decoded.slice(colon + 1))) return 'basic';
    }
    return 'none';
  }

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBodyBytes) throw new HttpError(413, 'Base.1.8.GeneralError', 'request body too large');
      chunks.push(chunk);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new HttpError(400, 'Base.1.8.MalformedJSON', 'request body is not JSON');
    }
  }

  function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new HttpError(400, 'Base.1.8.PropertyValueFormatError', z.prettifyError(parsed.error));
    return parsed.data;
  }

  function systemOrThrow(id: string): SystemState {
    const system = systems.get(id);
    if (!system) throw new HttpError(404, 'Base.1.8.ResourceMissingAtURI', `no system ${id}`);
    return system;
  }

  async function systemResource(system: SystemState): Promise<{ body: Record<string, unknown>; etag: string | undefined }> {
    const id = system.config.id;
    const path = `${systemsPath}/${id}`;
    const resetAction: Record<string, unknown> = { target: `${path}/Actions/ComputerSystem.Reset` };
    if (resetTypesVia === 'inline') resetAction['ResetType@Redfish.AllowableValues'] = [...system.resetTypes];
    else resetAction['@Redfish.ActionInfo'] = `${path}/ResetActionInfo`;
    const body: Record<string, unknown> = {
      '@odata.id': path,
      '@odata.type': '#ComputerSystem.v1_13_0.ComputerSystem',
      Id: id,
      Name: `Emulated system ${id}`,
      SystemType: 'Physical',
      PowerState: await system.config.machine.powerState(),
      Status: { State: 'Enabled', Health: 'OK' },
      Boot: {
        BootSourceOverrideTarget: system.bootOverride.target,
        BootSourceOverrideEnabled: system.bootOverride.enabled,
        BootSourceOverrideMode: system.bootOverride.mode,
        'BootSourceOverrideTarget@Redfish.AllowableValues': [...bootOverrideTargets],
        'BootSourceOverrideMode@Redfish.AllowableValues': [...bootOverrideModes],
      },
      Actions: { '#ComputerSystem.Reset': resetAction },
    };
    const lacks = system.config.lacks ?? {};
    const boot = body['Boot'] as Record<string, unknown>;
    if (lacks.PowerState === 'omit') delete body['PowerState'];
    if (lacks.PowerState === 'null') body['PowerState'] = null;
    if (lacks.BootSourceOverrideMode !== undefined) delete boot['BootSourceOverrideMode@Redfish.AllowableValues'];
    if (lacks.BootSourceOverrideMode === 'omit') delete boot['BootSourceOverrideMode'];
    if (lacks.BootSourceOverrideMode === 'null') boot['BootSourceOverrideMode'] = null;
    if (etagPolicy === 'none') return { body, etag: undefined };
    const digest = createHash('sha256').update(`${system.revision}:${JSON.stringify(body)}`).digest('hex');
    const etag = `"${digest.slice(0, 16)}"`;
    body['@odata.etag'] = etag;
    return { body, etag };
  }

  /** Carries out a reset; returns whether the machine booted (so a `Once` override is used up). */
  async function carryOutReset(system: SystemState, resetType: EmulatedResetType): Promise<boolean> {
    const machine = system.config.machine;
    const wasOn = (await machine.powerState()) === 'On';
    let booted: boolean;
    switch (resetType) {
      case 'On':
      case 'ForceOn':
        await machine.powerOn();
        booted = !wasOn;
        break;
      case 'ForceOff':
        await machine.forceOff();
        booted = false;
        break;
      case 'GracefulShutdown':
        await machine.gracefulShutdown();
        booted = false;
        break;
      // No OS to ask for a graceful restart: both restarts are a reset.
      case 'GracefulRestart':
      case 'ForceRestart':
        if (wasOn) await machine.reset();
        else await machine.powerOn();
        booted = true;
        break;
      case 'PowerCycle':
        if (wasOn) await machine.forceOff();
        await machine.powerOn();
        booted = true;
        break;
      case 'PushPowerButton':
        if (wasOn) await machine.gracefulShutdown();
        else await machine.powerOn();
        booted = !wasOn;
        break;
    }
    system.revision += 1;
    if (booted && system.bootOverride.enabled === 'Once') {
      system.bootOverride = { ...noBootOverride, mode: system.bootOverride.mode };
      await machine.setBootOverride(system.bootOverride);
    }
    return booted;
  }

  function taskResource(task: Task): Record<string, unknown> {
    return {
      '@odata.id': `${tasksPath}/${task.id}`,
      '@odata.type': '#Task.v1_5_0.Task',
      Id: task.id,
      Name: `Task ${task.id}`,
      TaskState: task.state,
      TaskStatus: task.state === 'Exception' ? 'Critical' : 'OK',
      TaskMonitor: `${taskMonitorsPath}/${task.id}`,
      Messages: task.message ? [{ MessageId: 'Base.1.8.GeneralError', Message: task.message }] : [],
    };
  }

  async function handleReset(req: IncomingMessage, res: ServerResponse, system: SystemState): Promise<void> {
    const { ResetType } = parseBody(resetBody, await readJson(req));
    const resetType = system.resetTypes.find((allowed) => allowed === ResetType);
    if (!resetType) {
      throw new HttpError(
        400,
        'Base.1.8.ActionParameterValueNotInList',
        `ResetType ${JSON.stringify(ResetType)} is not one of ${system.resetTypes.join(', ')}`,
      );
    }
    if (!options.resetTask) {
      await carryOutReset(system, resetType);
      res.writeHead(204).end();
      return;
    }
    const task: Task = {
      id: String(nextTaskId++),
      state: 'Running',
      message: '',
      pollsLeft: options.resetTask.pollsBeforeDone,
      run: async () => {
        await carryOutReset(system, resetType);
      },
      monitorOpen: true,
    };
    tasks.set(task.id, task);
    sendJson(res, 202, taskResource(task), { Location: `${taskMonitorsPath}/${task.id}` });
  }

  async function handleTaskMonitor(res: ServerResponse, taskId: string): Promise<void> {
    const task = tasks.get(taskId);
    if (!task || !task.monitorOpen) throw new HttpError(404, 'Base.1.8.ResourceMissingAtURI', `no task monitor ${taskId}`);
    if (task.pollsLeft > 0) {
      task.pollsLeft -= 1;
      sendJson(res, 202, taskResource(task), { Location: `${taskMonitorsPath}/${task.id}` });
      return;
    }
    try {
      await task.run();
      task.state = 'Completed';
    } catch (error) {
      task.state = 'Exception';
      task.message = String(error);
    }
    // Per the Redfish spec a task monitor goes away once it has reported completion.
    task.monitorOpen = false;
    sendJson(res, 200, taskResource(task));
  }

  async function handleSystemPatch(req: IncomingMessage, res: ServerResponse, system: SystemState): Promise<void> {
    const patch = parseBody(systemPatchBody, await readJson(req));
    if (patch.Boot.BootSourceOverrideMode !== undefined && system.config.lacks?.BootSourceOverrideMode !== undefined) {
      throw new HttpError(400, 'Base.1.8.PropertyUnknown', 'BootSourceOverrideMode is not a property of this system');
    }
    options.beforeSystemPatch?.(system.config.id);
    if (etagPolicy !== 'none') {
      const ifMatch = req.headers['if-match'];
      if (ifMatch === undefined && etagPolicy === 'required') {
        throw new HttpError(428, 'Base.1.8.PreconditionRequired', 'If-Match is required to modify this system');
      }
      if (ifMatch !== undefined) {
        const { etag } = await systemResource(system);
        const matches = ifMatch.split(',').some((candidate) => candidate.trim() === '*' || candidate.trim() === etag);
        if (!matches) throw new HttpError(412, 'Base.1.8.PreconditionFailed', 'If-Match does not match the current ETag');
      }
    }
    system.bootOverride = {
      target: patch.Boot.BootSourceOverrideTarget ?? system.bootOverride.target,
      enabled: patch.Boot.BootSourceOverrideEnabled ?? system.bootOverride.enabled,
      mode: patch.Boot.BootSourceOverrideMode ?? system.bootOverride.mode,
    };
    system.revision += 1;
    await system.config.machine.setBootOverride(system.bootOverride);
    const { body, etag } = await systemResource(system);
    sendJson(res, 200, body, etag ? { ETag: etag } : {});
  }

  async function handleSessionLogin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!sessionsEnabled) throw new HttpError(405, 'Base.1.8.ServiceDisabled', 'SessionService is disabled');
    const login = parseBody(sessionLoginBody, await readJson(req));
    if (!credentialsValid(login.UserName, login.Password)) {
      throw new HttpError(401, 'Base.1.8.NoValidSession', 'invalid user name or password');
    }
    const session: Session = { id: String(nextSessionId++), token: randomBytes(24).toString('hex') };
    sessions.set(session.id, session);
    sendJson(res, 201, sessionResource(session, login.UserName), {
      'X-Auth-Token': session.token,
      Location: `${sessionsPath}/${session.id}`,
    });
  }

  function sessionResource(session: Session, userName: string): Record<string, unknown> {
    return {
      '@odata.id': `${sessionsPath}/${session.id}`,
      '@odata.type': '#Session.v1_3_0.Session',
      Id: session.id,
      Name: `Session ${session.id}`,
      UserName: userName,
    };
  }

  function collection(path: string, type: string, name: string, memberPaths: string[]): Record<string, unknown> {
    return {
      '@odata.id': path,
      '@odata.type': type,
      Name: name,
      'Members@odata.count': memberPaths.length,
      Members: memberPaths.map((member) => ({ '@odata.id': member })),
    };
  }

  function serviceRoot(): Record<string, unknown> {
    return {
      '@odata.id': `${serviceRootPath}/`,
      '@odata.type': '#ServiceRoot.v1_11_0.ServiceRoot',
      Id: 'RootService',
      Name: 'Shoal Redfish BMC emulator',
      RedfishVersion: '1.11.0',
      UUID: '8a1e6f5c-0000-4000-8000-5a0a1b2c3d4e',
      Systems: { '@odata.id': systemsPath },
      SessionService: { '@odata.id': sessionServicePath },
      TaskService: { '@odata.id': taskServicePath },
      Links: { Sessions: { '@odata.id': sessionsPath } },
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    // Redfish allows a trailing slash on any URI; compare without it.
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    const auth = authenticate(req);
    const ifMatch = req.headers['if-match'];
    requests.push({ method, path, auth, ifMatch });

    // Unauthenticated by the Redfish spec: the version document, the service root, session login.
    if (method === 'GET' && path === '/redfish') return sendJson(res, 200, { v1: `${serviceRootPath}/` });
    if (method === 'GET' && path === serviceRootPath) return sendJson(res, 200, serviceRoot());
    if (method === 'POST' && path === sessionsPath) return handleSessionLogin(req, res);

    if (auth === 'none') {
      throw new HttpError(401, 'Base.1.8.NoValidSession', 'authentication required', {
        'WWW-Authenticate': 'Basic realm="Redfish"',
      });
    }

    const segments = path.split('/').slice(1);
    const [, , , memberId, child, action] = segments;

    if (path === systemsPath && method === 'GET') {
      return sendJson(
        res,
        200,
        collection(systemsPath, '#ComputerSystemCollection.ComputerSystemCollection', 'Computer System Collection', [
          ...[...systems.keys()].map((id) => `${systemsPath}/${id}`),
        ]),
      );
    }
    if (path.startsWith(`${systemsPath}/`) && memberId !== undefined) {
      const system = systemOrThrow(memberId);
      if (child === undefined && method === 'GET') {
        const { body, etag } = await systemResource(system);
        return sendJson(res, 200, body, etag ? { ETag: etag } : {});
      }
      if (child === undefined && method === 'PATCH') return handleSystemPatch(req, res, system);
      if (child === 'Actions' && action === 'ComputerSystem.Reset' && segments.length === 6 && method === 'POST') {
        return handleReset(req, res, system);
      }
      if (child === 'ResetActionInfo' && segments.length === 5 && method === 'GET' && resetTypesVia === 'action-info') {
        return sendJson(res, 200, {
          '@odata.id': `${systemsPath}/${system.config.id}/ResetActionInfo`,
          '@odata.type': '#ActionInfo.v1_1_2.ActionInfo',
          Id: 'ResetActionInfo',
          Name: 'Reset Action Info',
          Parameters: [{ Name: 'ResetType', Required: true, DataType: 'String', AllowableValues: [...system.resetTypes] }],
        });
      }
    }
    if (path === sessionServicePath && method === 'GET') {
      return sendJson(res, 200, {
        '@odata.id': sessionServicePath,
        '@odata.type': '#SessionService.v1_1_8.SessionService',
        Id: 'SessionService',
        Name: 'Session Service',
        ServiceEnabled: sessionsEnabled,
        SessionTimeout: 1800,
        Sessions: { '@odata.id': sessionsPath },
      });
    }
    if (path === sessionsPath && method === 'GET') {
      return sendJson(
        res,
        200,
        collection(sessionsPath, '#SessionCollection.SessionCollection', 'Session Collection', [
          ...[...sessions.keys()].map((id) => `${sessionsPath}/${id}`),
        ]),
      );
    }
    if (path.startsWith(`${sessionsPath}/`) && segments.length === 5) {
      const sessionId = segments[4] ?? '';
      const session = sessions.get(sessionId);
      if (!session) throw new HttpError(404, 'Base.1.8.ResourceMissingAtURI', `no session ${sessionId}`);
      if (method === 'GET') return sendJson(res, 200, sessionResource(session, options.username));
      if (method === 'DELETE') {
        sessions.delete(sessionId);
        res.writeHead(204).end();
        return;
      }
    }
    if (path === taskServicePath && method === 'GET') {
      return sendJson(res, 200, {
        '@odata.id': taskServicePath,
        '@odata.type': '#TaskService.v1_1_5.TaskService',
        Id: 'TaskService',
        Name: 'Task Service',
        ServiceEnabled: true,
        Tasks: { '@odata.id': tasksPath },
      });
    }
    if (path === tasksPath && method === 'GET') {
      return sendJson(
        res,
        200,
        collection(tasksPath, '#TaskCollection.TaskCollection', 'Task Collection', [
          ...[...tasks.keys()].map((id) => `${tasksPath}/${id}`),
        ]),
      );
    }
    if (path.startsWith(`${tasksPath}/`) && segments.length === 5 && method === 'GET') {
      const task = tasks.get(segments[4] ?? '');
      if (!task) throw new HttpError(404, 'Base.1.8.ResourceMissingAtURI', `no task ${segments[4]}`);
      return sendJson(res, 200, taskResource(task));
    }
    if (path.startsWith(`${taskMonitorsPath}/`) && segments.length === 5 && method === 'GET') {
      return handleTaskMonitor(res, segments[4] ?? '');
    }
    throw new HttpError(404, 'Base.1.8.ResourceMissingAtURI', `${method} ${path} is not served here`);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `${certificate ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    certificatePem: certificate?.certPem,
    certificateFingerprintSha256: certificate?.fingerprintSha256,
    requests,
    sessionCount: () => sessions.size,
    touchSystem: (systemId) => {
      systemOrThrow(systemId).revision += 1;
    },
    dropSessions: () => sessions.clear(),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(payload),
    'OData-Version': '4.0',
    ...headers,
  });
  res.end(payload);
}

function sendError(res: ServerResponse, error: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(
    res,
    error.status,
    {
      error: {
        code: error.code,
        message: error.message,
        '@Message.ExtendedInfo': [{ MessageId: error.code, Message: error.message }],
      },
    },
    error.headers,
  );
}
