// A thin typed Redfish client for one BMC and one ComputerSystem: discovery, session or
// Basic auth, power state (always read, never cached), resets limited to the ResetType
// values the system advertises, boot override with ETag/If-Match, and 202 task monitors.
// Every reply is validated here, at the edge, before anything else sees it.
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { parseRedfishEndpoint, type RedfishEndpoint } from './endpoint.js';
import {
  RedfishActionNotSupportedError,
  RedfishAuthError,
  RedfishConfigError,
  RedfishHttpError,
  RedfishMalformedReplyError,
  RedfishNotFoundError,
  RedfishTaskError,
  RedfishUsageError,
} from './errors.js';
import { BmcTransport, type HttpExchange, type HttpReply } from './transport.js';

export * from './errors.js';
export { redfishEndpointConfigSchema, type RedfishEndpointConfig } from './endpoint.js';

/** What the appliance wants done to power; mapped onto whatever ResetType the system allows. */
export const powerIntents = ['on', 'off', 'graceful-off', 'restart', 'cycle'] as const;
export type PowerIntent = (typeof powerIntents)[number];

export const redfishPowerStates = ['On', 'Off', 'PoweringOn', 'PoweringOff', 'Paused'] as const;
export type RedfishPowerState = (typeof redfishPowerStates)[number];

export const resetTypes = [
  'On',
  'ForceOn',
  'ForceOff',
  'GracefulShutdown',
  'GracefulRestart',
  'ForceRestart',
  'Nmi',
  'PushPowerButton',
  'PowerCycle',
  'Suspend',
  'Pause',
  'Resume',
] as const;
export type ResetType = (typeof resetTypes)[number];

/**
 * ResetType values to use for each intent, best first. `off` never falls back to a graceful
 * shutdown (the OS may ignore it) nor to PushPowerButton (it toggles, and would power on an
 * off machine).
 */
export const resetPreferences: Record<PowerIntent, readonly ResetType[]> = {
  on: ['On', 'ForceOn'],
  off: ['ForceOff'],
  'graceful-off': ['GracefulShutdown', 'ForceOff'],
  restart: ['ForceRestart', 'GracefulRestart', 'PowerCycle'],
  cycle: ['PowerCycle', 'ForceRestart'],
};

export const bootOverrideRequestSchema = z.strictObject({
  target: z.enum(['Pxe', 'Hdd']),
  enabled: z.enum(['Once', 'Continuous']),
  /** Left as the BMC has it when absent, and on a system without BootSourceOverrideMode. */
  mode: z.enum(['UEFI', 'Legacy']).optional(),
});
export type BootOverrideRequest = z.infer<typeof bootOverrideRequestSchema>;

export interface BootOverrideState {
  target: string | undefined;
  enabled: string | undefined;
  mode: string | undefined;
}

export type AuthMethod = 'session' | 'basic';

// --- Reply schemas: only the fields this client relies on. ---

const odataRef = z.object({ '@odata.id': z.string().min(1) });

const serviceRootSchema = z.object({
  Systems: odataRef,
  SessionService: odataRef.optional(),
  Links: z.object({ Sessions: odataRef.optional() }).optional(),
});

const collectionSchema = z.object({ Members: z.array(odataRef) });

const resetActionSchema = z.object({
  target: z.string().min(1),
  'ResetType@Redfish.AllowableValues': z.array(z.string()).optional(),
  '@Redfish.ActionInfo': z.string().min(1).optional(),
});

const computerSystemSchema = z.object({
  '@odata.etag': z.string().optional(),
  // Optional in the ComputerSystem schema: some BMCs leave it out or null (e.g. while a reset runs).
  PowerState: z.enum(redfishPowerStates).nullable().optional(),
  Boot: z
    .object({
      BootSourceOverrideTarget: z.string().nullable().optional(),
      BootSourceOverrideEnabled: z.string().nullable().optional(),
      BootSourceOverrideMode: z.string().nullable().optional(),
      'BootSourceOverrideTarget@Redfish.AllowableValues': z.array(z.string()).optional(),
      'BootSourceOverrideMode@Redfish.AllowableValues': z.array(z.string()).optional(),
    })
    .optional(),
  Actions: z.object({ '#ComputerSystem.Reset': resetActionSchema.optional() }).optional(),
});
type ComputerSystem = z.infer<typeof computerSystemSchema>;

const actionInfoSchema = z.object({
  Parameters: z.array(z.object({ Name: z.string(), AllowableValues: z.array(z.string()).optional() })),
});

const taskStates = [
  'New',
  'Starting',
  'Running',
  'Suspended',
  'Interrupted',
  'Pending',
  'Stopping',
  'Completed',
  'Killed',
  'Exception',
  'Service',
  'Cancelling',
  'Cancelled',
] as const;
const taskSchema = z.object({
  TaskState: z.enum(taskStates),
  Messages: z.array(z.object({ Message: z.string().optional() })).optional(),
});
const failedTaskStates: ReadonlySet<string> = new Set(['Killed', 'Exception', 'Cancelled']);

const redfishErrorSchema = z.object({ error: z.object({ message: z.string().optional() }) });

/** Statuses with which a BMC says it has no session login; Basic auth is tried instead. */
const sessionsRefusedStatuses: ReadonlySet<number> = new Set([404, 405, 501, 503]);
/** Statuses with which a BMC answers the logout of a session it has already dropped. */
const sessionGoneStatuses: ReadonlySet<number> = new Set([401, 404]);

interface Session {
  token: string;
  /** Where to DELETE the session; absent when the BMC gave no Location. */
  path: string | undefined;
}

export class RedfishClient {
  private session: Session | undefined;
  private pendingLogin: Promise<void> | undefined;
  private closed = false;
  private locatedSystemPath = '';

  private constructor(
    private readonly endpoint: RedfishEndpoint,
    private readonly transport: BmcTransport,
    private readonly sessionsPath: string | undefined,
  ) {}

  /**
   * Reads the service root, logs in (session, or Basic where sessions are refused) and finds
   * the system: the one the URL names, or the only one in the Systems collection.
   * `config` is validated here; see `redfishEndpointConfigSchema`.
   */
  static async connect(config: unknown): Promise<RedfishClient> {
    const endpoint = parseRedfishEndpoint(config);
    const transport = new BmcTransport(endpoint);
    const rootReply = await transport.send({ method: 'GET', path: '/redfish/v1/' });
    const root = parseReply(serviceRootSchema, '/redfish/v1/', expectSuccess(rootReply, 'GET /redfish/v1/'));
    const sessionsRef =
      root.Links?.Sessions?.['@odata.id'] ??
      (root.SessionService ? `${root.SessionService['@odata.id'].replace(/\/+$/, '')}/Sessions` : undefined);
    const sessionsPath = sessionsRef === undefined ? undefined : transport.pathOnBmc(sessionsRef);
    const systemsPath = transport.pathOnBmc(root.Systems['@odata.id']);

    const client = new RedfishClient(endpoint, transport, sessionsPath);
    client.session = await client.openSession();
    try {
      client.locatedSystemPath = endpoint.systemPath ?? (await client.findOnlySystem(systemsPath));
      // The system must exist and be readable with these credentials before we hand the client out.
      await client.readSystem();
      return client;
    } catch (error) {
      // The discovery error is what the caller needs; a failed logout on top of it would hide it.
      await client.close().catch(() => undefined);
      throw error;
    }
  }

  /** Path of the ComputerSystem this client drives, e.g. `/redfish/v1/Systems/1`. */
  get systemPath(): string {
    return this.locatedSystemPath;
  }

  get authMethod(): AuthMethod {
    return this.session ? 'session' : 'basic';
  }

  /** Undefined when the system reports no PowerState (absent or null): the power state is unknown. */
  async getPowerState(): Promise<RedfishPowerState | undefined> {
    return (await this.readSystem()).system.PowerState ?? undefined;
  }

  async getBootOverride(): Promise<BootOverrideState> {
    const boot = (await this.readSystem()).system.Boot;
    return {
      target: boot?.BootSourceOverrideTarget ?? undefined,
      enabled: boot?.BootSourceOverrideEnabled ?? undefined,
      mode: boot?.BootSourceOverrideMode ?? undefined,
    };
  }

  /** The ResetType values the system advertises, inline or through its ActionInfo resource. */
  async allowedResetTypes(): Promise<ResetType[]> {
    return (await this.resetAction()).allowed;
  }

  /**
   * Carries out `intent` with the first ResetType of `resetPreferences[intent]` that the system
   * allows, waiting for the BMC's task when it answers 202. Returns the ResetType used.
   */
  async reset(intent: PowerIntent): Promise<ResetType> {
    if (!powerIntents.includes(intent)) throw new RedfishUsageError(`unknown power intent ${JSON.stringify(intent)}`);
    const { targetPath, allowed } = await this.resetAction();
    const resetType = resetPreferences[intent].find((candidate) => allowed.includes(candidate));
    if (!resetType) {
      throw new RedfishActionNotSupportedError(
        `${this.systemPath} allows ResetType ${allowed.join(', ') || '(none)'}; none of them does ${intent} (${resetPreferences[intent].join(' or ')})`,
      );
    }
    const reply = await this.call({ method: 'POST', path: targetPath, body: { ResetType: resetType } });
    await this.completion(reply, `reset ${resetType}`);
    return resetType;
  }

  /**
   * Sets the next boot device. Reads the system first for its allowed values and ETag, sends
   * If-Match when there is one, and on 412 (someone else changed the system) reads and tries once more.
   * Returns what it set: without `mode` when the system has no BootSourceOverrideMode (absent or
   * null), since such a BMC has no mode to choose and refuses the property.
   */
  async setBootOverride(input: BootOverrideRequest): Promise<BootOverrideRequest> {
    const parsed = bootOverrideRequestSchema.safeParse(input);
    if (!parsed.success) throw new RedfishUsageError(`invalid boot override: ${z.prettifyError(parsed.error)}`);
    const request = parsed.data;
    for (let attempt = 1; ; attempt++) {
      const { system, etag } = await this.readSystem();
      const boot = system.Boot;
      if (!boot) throw new RedfishActionNotSupportedError(`${this.systemPath} has no Boot property`);
      const allowedTargets = boot['BootSourceOverrideTarget@Redfish.AllowableValues'];
      if (allowedTargets && !allowedTargets.includes(request.target)) {
        throw new RedfishActionNotSupportedError(
          `${this.systemPath} allows boot targets ${allowedTargets.join(', ')}, not ${request.target}`,
        );
      }
      const hasMode = boot.BootSourceOverrideMode !== undefined && boot.BootSourceOverrideMode !== null;
      const mode = hasMode ? request.mode : undefined;
      if (mode !== undefined) {
        const allowedModes = boot['BootSourceOverrideMode@Redfish.AllowableValues'];
        // A BMC that has modes but not this one would boot the other one: worse than failing.
        if (allowedModes && !allowedModes.includes(mode)) {
          throw new RedfishActionNotSupportedError(`${this.systemPath} allows boot modes ${allowedModes.join(', ')}, not ${mode}`);
        }
      }
      const sent: BootOverrideRequest = { target: request.target, enabled: request.enabled, ...(mode === undefined ? {} : { mode }) };
      const patch: Record<string, string> = {
        BootSourceOverrideTarget: sent.target,
        BootSourceOverrideEnabled: sent.enabled,
      };
      if (sent.mode !== undefined) patch['BootSourceOverrideMode'] = sent.mode;
      const reply = await this.call(
        {
          method: 'PATCH',
          path: this.systemPath,
          headers: etag === undefined ? {} : { 'If-Match': etag },
          body: { Boot: patch },
        },
        { passStatuses: [412] },
      );
      if (reply.status === 412) {
        if (attempt < 2) continue;
        throw new RedfishHttpError(`PATCH ${this.systemPath}: ETag still stale after re-reading (412 twice)`, 412);
      }
      await this.completion(reply, 'boot override');
      return sent;
    }
  }

  /** Logs out the session, if any. The client is unusable afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const session = this.session;
    this.session = undefined;
    if (!session?.path) return;
    const reply = await this.transport.send({
      method: 'DELETE',
      path: session.path,
      headers: { 'X-Auth-Token': session.token },
    });
    // A session the BMC already dropped (timeout) is as closed as one we deleted: it answers 404
    // for the resource, or 401 because the token it was dropped with no longer authenticates.
    if (!sessionGoneStatuses.has(reply.status)) expectSuccess(reply, `DELETE ${session.path}`);
  }

  // --- internals ---

  /** Logs in; undefined when the BMC has no session login and Basic auth is to be used. */
  private async openSession(): Promise<Session | undefined> {
    if (this.sessionsPath === undefined) return undefined;
    const reply = await this.transport.send({
      method: 'POST',
      path: this.sessionsPath,
      body: { UserName: this.endpoint.username, Password: this.endpoint.password },
    });
    if (sessionsRefusedStatuses.has(reply.status)) return undefined;
    expectSuccess(reply, `POST ${this.sessionsPath}`);
    const token = singleHeader(reply, 'x-auth-token');
    if (!token) throw new RedfishMalformedReplyError(`POST ${this.sessionsPath}: session created without X-Auth-Token`);
    const location = singleHeader(reply, 'location') ?? bodySelfLink(reply.body);
    return { token, path: location === undefined ? undefined : this.transport.pathOnBmc(location) };
  }

  /** Replaces a session the BMC no longer accepts; concurrent callers share one login. */
  private async renewSession(stale: Session): Promise<void> {
    if (this.session !== stale) return;
    this.pendingLogin ??= this.openSession()
      .then((fresh) => {
        this.session = fresh;
      })
      .finally(() => {
        this.pendingLogin = undefined;
      });
    await this.pendingLogin;
  }

  private async findOnlySystem(systemsPath: string): Promise<string> {
    const reply = await this.call({ method: 'GET', path: systemsPath });
    const members = parseReply(collectionSchema, systemsPath, reply).Members;
    const [only, ...others] = members;
    if (!only) throw new RedfishNotFoundError(`${systemsPath} has no systems`);
    if (others.length > 0) {
      throw new RedfishConfigError(
        `BMC has ${members.length} systems (${members.map((m) => m['@odata.id']).join(', ')}); name one in the BMC URL`,
      );
    }
    return this.transport.pathOnBmc(only['@odata.id']);
  }

  private async readSystem(): Promise<{ system: ComputerSystem; etag: string | undefined }> {
    const reply = await this.call({ method: 'GET', path: this.systemPath });
    const system = parseReply(computerSystemSchema, this.systemPath, reply);
    return { system, etag: singleHeader(reply, 'etag') ?? system['@odata.etag'] };
  }

  private async resetAction(): Promise<{ targetPath: string; allowed: ResetType[] }> {
    const action = (await this.readSystem()).system.Actions?.['#ComputerSystem.Reset'];
    if (!action) throw new RedfishActionNotSupportedError(`${this.systemPath} has no #ComputerSystem.Reset action`);
    let advertised = action['ResetType@Redfish.AllowableValues'];
    if (advertised === undefined && action['@Redfish.ActionInfo'] !== undefined) {
      const infoPath = this.transport.pathOnBmc(action['@Redfish.ActionInfo']);
      const info = parseReply(actionInfoSchema, infoPath, await this.call({ method: 'GET', path: infoPath }));
      advertised = info.Parameters.find((parameter) => parameter.Name === 'ResetType')?.AllowableValues;
    }
    // Sending a value the system did not advertise is how BMCs get wedged; without a list we send nothing.
    if (advertised === undefined) {
      throw new RedfishActionNotSupportedError(`${this.systemPath} does not advertise its ResetType values`);
    }
    const allowed = resetTypes.filter((known) => advertised.includes(known));
    return { targetPath: this.transport.pathOnBmc(action.target), allowed };
  }

  /**
   * One authenticated exchange; non-success statuses become typed errors unless listed in
   * `passStatuses`. A 401 on a session (expired on the BMC) logs in again and retries once:
   * a 401 means the BMC did not act on the request.
   */
  private async call(exchange: HttpExchange, opts: { passStatuses?: number[] } = {}): Promise<HttpReply> {
    if (this.closed) throw new RedfishConfigError('Redfish client is closed');
    const sessionUsed = this.session;
    let reply = await this.transport.send(this.authenticated(exchange));
    if (reply.status === 401 && sessionUsed) {
      await this.renewSession(sessionUsed);
      reply = await this.transport.send(this.authenticated(exchange));
    }
    if (opts.passStatuses?.includes(reply.status)) return reply;
    return expectSuccess(reply, `${exchange.method} ${exchange.path}`);
  }

  private authenticated(exchange: HttpExchange): HttpExchange {
    const auth: Record<string, string> = this.session
      ? { 'X-Auth-Token': this.session.token }
      : {
          Authorization: `Basic ${Buffer.from(`${this.endpoint.username}:${this.endpoint.password}`).toString('base64')}`,
        };
    return { ...exchange, headers: { ...exchange.headers, ...auth } };
  }

  /** Waits for a 202's task monitor to report completion; other success statuses are complete already. */
  private async completion(reply: HttpReply, what: string): Promise<void> {
    if (reply.status !== 202) return;
    const location = singleHeader(reply, 'location');
    if (!location) throw new RedfishMalformedReplyError(`${what}: 202 Accepted without a task monitor Location`);
    const monitorPath = this.transport.pathOnBmc(location);
    const deadline = Date.now() + this.endpoint.taskTimeoutMs;
    let pause = retryAfterMs(reply) ?? this.endpoint.taskPollIntervalMs;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new RedfishTaskError(`${what}: task ${monitorPath} not done within ${this.endpoint.taskTimeoutMs} ms`);
      }
      await sleep(Math.min(pause, remaining));
      const poll = await this.call({ method: 'GET', path: monitorPath });
      if (poll.status === 202) {
        pause = retryAfterMs(poll) ?? this.endpoint.taskPollIntervalMs;
        continue;
      }
      // Done: the monitor answers with the operation's result, often the Task itself.
      if (poll.status === 204 || poll.body.trim() === '') return;
      const task = taskSchema.safeParse(parseJson(monitorPath, poll.body));
      if (!task.success) return;
      if (failedTaskStates.has(task.data.TaskState)) {
        const messages = (task.data.Messages ?? []).map((m) => m.Message).filter(Boolean);
        throw new RedfishTaskError(`${what}: task ended ${task.data.TaskState}${messages.length ? `: ${messages.join('; ')}` : ''}`);
      }
      if (task.data.TaskState === 'Completed') return;
      pause = retryAfterMs(poll) ?? this.endpoint.taskPollIntervalMs;
    }
  }
}

function singleHeader(reply: HttpReply, name: string): string | undefined {
  const value = reply.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function retryAfterMs(reply: HttpReply): number | undefined {
  const value = singleHeader(reply, 'retry-after');
  if (value === undefined || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value) * 1000;
}

function bodySelfLink(body: string): string | undefined {
  try {
    return odataRef.safeParse(JSON.parse(body)).data?.['@odata.id'];
  } catch {
    return undefined;
  }
}

function parseJson(what: string, body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new RedfishMalformedReplyError(`${what}: reply is not JSON: ${JSON.stringify(body.slice(0, 80))}`);
  }
}

function parseReply<T>(schema: z.ZodType<T>, what: string, reply: HttpReply): T {
  const parsed = schema.safeParse(parseJson(what, reply.body));
  if (!parsed.success) {
    throw new RedfishMalformedReplyError(`${what}: reply does not fit the Redfish schema: ${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}

/** Returns the reply when 2xx; otherwise throws the typed error for its status. */
function expectSuccess(reply: HttpReply, what: string): HttpReply {
  if (reply.status >= 200 && reply.status < 300) return reply;
  let detail = '';
  try {
    detail = redfishErrorSchema.safeParse(JSON.parse(reply.body)).data?.error.message ?? '';
  } catch {
    // A non-JSON error body adds nothing we can trust; the status says enough.
  }
  const message = `${what}: HTTP ${reply.status}${detail ? ` (${detail})` : ''}`;
  if (reply.status === 401 || reply.status === 403) throw new RedfishAuthError(message, reply.status);
  if (reply.status === 404) throw new RedfishNotFoundError(message);
  throw new RedfishHttpError(message, reply.status);
}
