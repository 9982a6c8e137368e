// The appliance side of node agents (images/agent/PROTOCOL.md): hello, heartbeats and drained
// reports on node-facing routes, the run and image observations they carry, silence past a
// deadline observed as run=lost, and the run facet's drain, kexec and reboot steps delivered as the
// action of the next reply. It provides the bootstrap tokens the pxe module puts on kernel command
// lines, and trades each, once, for the boot token the agent keeps to itself.
import { createHash } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { ZodType } from 'zod';
import type { NodeId, NodeRecord } from '../../src/domain/node.js';
import { formatZodIssues } from '../../src/domain/zod-issues.js';
import { HARDWARE_FACET, type Hardware } from '../../src/contracts/hardware.js';
import { DEPLOY_BOOT_STAGES, NETWORK_BOOT_STAGES } from '../../src/facets/standard.js';
import { diskFacet, writtenImage } from '../../src/facets/disk.js';
import { KEXEC_FACET, kexecFacet } from '../../src/facets/kexec.js';
import { HttpProblem } from '../../src/api/problem.js';
import { openApiParts } from '../../src/api/openapi.js';
import type { FacetDriver, ModuleHost, ShoalModule, StepRequest } from '../../src/engine/module.js';
import { AgentMetrics } from './metrics.js';
import { BootTokenStore, type TokenMatch } from './tokens.js';
import { diskJobQueued, diskObservation, eraseJob, jobLines, reportedHardware, writeJob, type DiskJob } from './disk-jobs.js';
import { KexecFailures, kexecJob, kexecLines, kexecObservation, type KexecJob } from './kexec.js';
import type { KexecSupport } from './protocol.js';
import {
  DrainedReportSchema,
  HelloSchema,
  StatusReportSchema,
  bodyToken,
  formatReply,
  type AgentAction,
  type AgentState,
  type Hello,
  type StatusReport,
} from './protocol.js';

export interface AgentModuleOptions {
  /** Seconds between heartbeats, told to every agent in every reply. */
  intervalSeconds: number;
  /** Silence after which a live node is observed as run=lost. */
  lostAfterMs: number;
}

/** PROTOCOL.md: 3 × interval + 15 s covers a heartbeat's own request time and one lost reply. */
export function defaultLostAfterMs(intervalSeconds: number): number {
  return (3 * intervalSeconds + 15) * 1000;
}

const RUN_OF_STATE: Record<AgentState, string> = { running: 'ready', draining: 'draining', drained: 'drained' };
/** Run values an agent keeps alive with heartbeats: only these can go silent and become lost. */
const LIVE_RUN = new Set(['ready', 'draining', 'drained']);
/**
 * Boot values of a boot armed and not yet over: only then can its bootstrap be spent. A disk boot
 * counts: a disk write hands its bootstrap to the installed OS (disk-jobs.ts).
 */
const ARMED_BOOT = new Set<string>([...NETWORK_BOOT_STAGES, ...DEPLOY_BOOT_STAGES, 'kexec', 'disk']);
/** `sha256:` + 16 hex digits of the report as parsed: short enough for an event line, enough to tell two machines apart. */
function hardwareDigest(hardware: Hardware): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(hardware)).digest('hex').slice(0, 16)}`;
}

/** The observed facet of `systemctl is-system-running`, from the heartbeats of a node whose init is systemd; `none` once a boot without systemd followed one with it. */
export const SYSTEM_FACET = 'system';
/** The observed facet a replayed bootstrap is recorded on, so the operator sees it in `shoal events` and the node's observed state. */
export const BOOT_TOKEN_FACET = 'boot-token';

interface Liveness {
  lastSeenAt: number;
  lost: boolean;
  reports: number;
}

/** An action waiting for the node's next reply; repeated until its effect is seen. */
interface PendingAction {
  action: Exclude<AgentAction, 'none'>;
  /** The boot it was delivered to, once delivered. */
  deliveredTo?: string;
  /** For a kexec: what to load, and whether the agent said it is executing it. */
  kexec?: KexecJob & { executing?: boolean };
}

/** What the operator API shows of one node's agent. */
export interface AgentStatus {
  node: NodeId;
  lastSeenAt: number;
  lost: boolean;
  reports: number;
  action: AgentAction;
}

export class AgentModule implements ShoalModule {
  readonly name = 'agent';
  readonly openapi = {
    '/agents': {
      get: {
        summary: 'Every node whose agent said hello: boot id, image digest, addresses, last heartbeat, whether it is lost',
        responses: { 200: openApiParts.ok('the agents'), 401: openApiParts.problem },
      },
    },
    '/agents/{id}/kexec/clear': {
      post: {
        summary: "Clear a node's mark of failed kexecs, so the planner may choose kexec for it again (at its next hello)",
        parameters: [openApiParts.path('id', 'the node id')],
        responses: { 200: openApiParts.ok('whether there was a mark'), 401: openApiParts.problem, 403: openApiParts.problem, 404: openApiParts.problem },
      },
    },
  };
  readonly facets = [diskFacet, kexecFacet];
  readonly drivers: FacetDriver[];
  private host: ModuleHost | undefined;
  private tokens: BootTokenStore | undefined;
  private kexecFailures: KexecFailures | undefined;
  private metrics: AgentMetrics | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private stopListening: (() => void) | undefined;
  private readonly liveness = new Map<NodeId, Liveness>();
  private readonly actions = new Map<NodeId, PendingAction>();
  private readonly diskJobs = new Map<NodeId, DiskJob>();
  /** What each node's running boot said of kexec at its hello, so a profile change can be applied to it at once. */
  private readonly kexecSupport = new Map<NodeId, KexecSupport | undefined>();
  /** Nodes whose running boot could not load a kexec: unavailable to that boot. */
  private readonly kexecLoadFailed = new Set<NodeId>();
  /** Kexecs the agent said it executes, until the node's next hello tells whether the kexec'd kernel came up. */
  private readonly kexecsUnderWay = new Map<NodeId, KexecJob>();
  /** The bootstrap each node booted from disk keeps for its next boot from there, by the boot it was given to. */
  private readonly nextBootstraps = new Map<NodeId, { bootId: string; token?: string }>();

  constructor(private readonly options: AgentModuleOptions) {
    // run.boot is an await step: the hello confirms it, nothing is sent.
    this.drivers = [
      { facet: 'run', claims: (node) => this.claims(node), steps: { 'run.drain': (r) => this.ask('drain', r), 'run.kexec': (r) => this.startKexec(r), 'run.reboot': (r) => this.ask('reboot', r) } },
      { facet: 'disk', claims: (node) => this.claims(node), steps: { 'disk.write': (r) => this.startDiskJob('write', r), 'disk.erase': (r) => this.startDiskJob('erase', r) } },
    ];
  }

  start(host: ModuleHost): void {
    this.host = host;
    this.metrics = new AgentMetrics(host.metrics);
    const tokens = new BootTokenStore(host.dataDir, host.log);
    this.tokens = tokens;
    const kexecFailures = (this.kexecFailures = new KexecFailures(host.dataDir));
    host.services.provide('bootTokens', { issue: (nodeId, imageRef) => tokens.issue(nodeId, imageRef) });

    // Agents that were heartbeating before a restart get a full deadline to be heard again.
    const now = Date.now();
    for (const nodeId of tokens.nodesWithBoundBoot()) {
      const node = host.node(nodeId);
      if (node && this.claims(node) && LIVE_RUN.has(host.observed(nodeId).run?.value ?? '')) this.liveness.set(nodeId, { lastSeenAt: now, lost: false, reports: 0 });
    }
    this.stopListening = host.onNodeChange((id) => {
      // A profile that forbids or allows kexec now changes what the planner may choose for the running boot.
      if (host.node(id)) return void (this.kexecSupport.has(id) && this.observeKexec(id));
      tokens.forget(id);
      this.liveness.delete(id);
      this.actions.delete(id);
      this.diskJobs.delete(id);
      this.nextBootstraps.delete(id);
      this.kexecsUnderWay.delete(id);
      this.kexecSupport.delete(id);
      this.kexecLoadFailed.delete(id);
      kexecFailures.clear(id);
    });
    // A tenth of the deadline: lost is noticed at most 10 % late, and a sweep of 10,000 nodes is cheap.
    const sweepMs = Math.min(1_000, Math.max(50, Math.floor(this.options.lostAfterMs / 10)));
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
    this.sweepTimer.unref();

    const agentRoutes = express.Router();
    agentRoutes.use(express.json({ limit: '64kb' }));
    agentRoutes.post('/hello', (req, res) => this.onHello(req, res));
    agentRoutes.post('/heartbeat', (req, res) => this.onStatus(req, res, StatusReportSchema));
    agentRoutes.post('/drained', (req, res) => this.onStatus(req, res, DrainedReportSchema));
    agentRoutes.use((err: unknown, req: Request, res: Response, next: NextFunction) => this.onBodyError(err, req, res, next));
    host.http.use('/agent/v1', agentRoutes);

    host.api.get('/agents', (_req, res) => {
      res.json({ agents: [...this.liveness.keys()].map((id) => this.status(id)) });
    });
    host.api.post('/agents/:id/kexec/clear', (req, res) => {
      const node = host.node(req.params.id);
      if (!node) throw new HttpProblem(404, 'Not found', `no node with id "${req.params.id}"`);
      const cleared = kexecFailures.clear(node.id);
      host.log.info({ node: node.id, cleared }, 'kexec failures cleared by an operator');
      res.json({ node: node.id, cleared });
    });
  }

  stop(): void {
    clearInterval(this.sweepTimer);
    this.stopListening?.();
    this.tokens?.close();
  }

  /** The agent of one node as the appliance knows it, or undefined when it was never heard. */
  status(id: NodeId): AgentStatus | undefined {
    const live = this.liveness.get(id);
    if (!live) return undefined;
    return { node: id, lastSeenAt: live.lastSeenAt, lost: live.lost, reports: live.reports, action: this.actions.get(id)?.action ?? 'none' };
  }

  private claims(node: NodeRecord): boolean {
    // Simulated nodes have simulated agents: the sim module owns their run facet.
    return node.bmc.scheme !== 'sim';
  }

  /** Asks the node's agent, in its next heartbeat reply, to drain or reboot. */
  private async ask(action: PendingAction['action'], { node, signal }: StepRequest): Promise<void> {
    const pending: PendingAction = { action };
    this.actions.set(node.id, pending);
    // A step that ended stops asking: given up (superseded, timed out), or confirmed, when the agent has done it.
    signal.addEventListener('abort', () => this.actions.get(node.id) === pending && this.actions.delete(node.id), { once: true });
  }

  /** The kexec facet from what the running boot said, the node's configuration now and its failed kexecs. */
  private observeKexec(id: NodeId): void {
    // A boot whose kexec failed to load stays unavailable until the next boot; a config change does not undo that.
    if (this.kexecLoadFailed.has(id)) return;
    const host = this.host!;
    const seen = kexecObservation(this.kexecSupport.get(id), host.services.get('nodeConfig')?.boot(id)?.kexec, this.kexecFailures!.of(id));
    host.observe(id, KEXEC_FACET, seen.value, seen.detail);
  }

  /**
   * Asks the running agent to load the armed boot and kexec into it. (A profile that forbids kexec
   * has already made the facet unavailable, through the node-change listener, so it is not asked.)
   */
  private async startKexec({ node, signal }: StepRequest): Promise<void> {
    const host = this.host!;
    const boot = host.services.get('armedBoots')?.forKexec(node.id) ?? { problem: 'no boot module provides armed boots (add "pxe" to the modules)' };
    if ('problem' in boot) throw new Error(`cannot kexec: ${boot.problem}`);
    const pending: PendingAction = { action: 'kexec', kexec: kexecJob(boot) };
    this.actions.set(node.id, pending);
    host.log.info({ node: node.id, job: pending.kexec!.id, image: boot.image }, 'kexec asked of the running agent');
    signal.addEventListener('abort', () => this.actions.get(node.id) === pending && this.actions.delete(node.id), { once: true });
  }

  /**
   * What a heartbeat says of the kexec asked of it. Executing: the boot facet sees the armed boot
   * started by the OS and the run facet sees the node booting. Failed before it went (a checksum,
   * a load the kernel refused): kexec is unavailable to this boot, so the plan reboots instead.
   */
  private kexecReport(id: NodeId, report: StatusReport): void {
    const pending = this.actions.get(id);
    const job = pending?.kexec;
    if (!job || report.kexecJob !== job.id) return;
    const host = this.host!;
    if (report.kexec === 'executing' && !job.executing) {
      job.executing = true;
      this.kexecsUnderWay.set(id, job);
      host.services.get('armedBoots')?.kexecStarted(id);
      host.log.info({ node: id, job: job.id, image: job.boot.image }, 'agent is kexecing into the armed boot');
    } else if (report.kexec === 'failed') {
      const reason = `the agent could not kexec ${job.boot.image}: ${report.kexecError ?? 'no reason given'}`;
      this.actions.delete(id);
      this.kexecFailures!.failed(id, reason);
      this.kexecLoadFailed.add(id);
      host.log.warn({ node: id, job: job.id, reason }, 'kexec failed before it went');
      host.observe(id, KEXEC_FACET, 'unavailable', `${reason}; this boot reboots through the firmware instead`);
    }
  }

  /**
   * At a boot's first hello: whether a kexec under way came up. The kexec'd boot itself says hello
   * while boot is observed `kexec`; any other boot after it (the power cycle that followed a kexec
   * whose kernel never spoke) counts as a failed kexec.
   */
  private concludeKexec(id: NodeId): void {
    const job = this.kexecsUnderWay.get(id);
    if (!job) return;
    this.kexecsUnderWay.delete(id);
    if (this.host!.observed(id).boot?.value === 'kexec') this.kexecFailures!.clear(id);
    else this.kexecFailures!.failed(id, `the kexec'd kernel of ${job.boot.image} never said hello; the node was booted through the firmware`);
  }

  /**
   * An OS booted from disk keeps its boot words on the disk, and this boot's bootstrap is spent: it
   * is given the bootstrap of its next boot from there, once its boot token is confirmed, in every
   * reply of this boot (a lost reply loses nothing; the agent rewrites its file only when it
   * changed). A network boot armed later supersedes it, as any newer arming does.
   */
  private nextDiskBootstrap(id: NodeId, bootId: string, imageRef: string): string | undefined {
    const next = this.nextBootstraps.get(id);
    if (next?.bootId !== bootId || this.host!.observed(id).boot?.value !== 'disk') return undefined;
    next.token ??= this.tokens!.issue(id, imageRef);
    return next.token;
  }

  /** Decides a disk job for the deploy environment's agent, carried by its next replies until a report ends it. */
  private async startDiskJob(kind: DiskJob['kind'], { node, desired, signal }: StepRequest): Promise<void> {
    const host = this.host!;
    const hardware = reportedHardware(host.observed(node.id)[HARDWARE_FACET]?.detail);
    const config = host.services.get('nodeConfig')?.disk(node.id);
    const job =
      kind === 'write'
        ? writeJob(hardware, config?.rootDevice, desired.image ? host.services.get('images')?.get(desired.image) : undefined, desired.image, () => this.tokens!.issue(node.id, desired.image!))
        : eraseJob(hardware, config?.rootDevice, config?.erase ?? 'quick');
    this.diskJobs.set(node.id, job);
    const queued = diskJobQueued(job);
    host.observe(node.id, 'disk', queued.value, queued.detail);
    host.log.info({ node: node.id, job: job.id, kind, device: job.device, image: job.write?.image.ref, erase: job.erase }, 'disk job for the deploy environment');
    signal.addEventListener('abort', () => this.diskJobs.get(node.id) === job && this.diskJobs.delete(node.id), { once: true });
  }

  /** What a heartbeat says of the node's disk job, as the disk observation; a job that ended is not sent again. */
  private diskReport(id: NodeId, report: StatusReport): void {
    const job = this.diskJobs.get(id);
    const seen = job && diskObservation(job, report);
    if (!seen) return;
    this.host!.observe(id, 'disk', seen.value, seen.detail);
    if (seen.ended) this.diskJobs.delete(id);
  }

  /**
   * A node that boots again, or goes silent, while its disk was being written or erased was cut
   * off (a power cut, a reset, a hang): the disk holds a partial job. Silence counts because a reset
   * the BMC never saw boots the deploy environment again with the spent bootstrap, whose hello is
   * refused: the write would otherwise wait for its deadline.
   */
  private diskJobInterrupted(id: NodeId, how: 'booted again' | 'went silent'): void {
    this.diskJobs.delete(id);
    const disk = this.host!.observed(id).disk;
    if (disk?.value === 'writing' || disk?.value === 'erasing') {
      this.host!.observe(id, 'disk', 'failed', `interrupted: the node ${how} during the ${disk.value === 'writing' ? 'write' : 'erase'} (${disk.detail ?? 'no progress reported'}); its first MiB stays zero, so it boots nothing`);
    }
  }

  private onHello(req: Request, res: Response): void {
    const accepted = this.accept(req, res, HelloSchema);
    if (!accepted) return;
    const { match, body } = accepted;
    const host = this.host!;
    const id = match.nodeId;
    let bootToken: string | undefined;
    if (match.kind === 'bootstrap') {
      const { record } = match;
      const firstHello = record.bootId === null;
      // The same boot again before it ever used its boot token: the reply was lost, not stolen.
      const lostReply = match.slot === 'current' && record.bootId === body.bootId && record.confirmedAt === null;
      if (!firstHello && !lostReply) return this.bootstrapReplayed(req, res, match, body.bootId);
      if (!ARMED_BOOT.has(host.observed(id).boot?.value ?? '')) return this.refuse(req, res, 401, 'boot not armed', { node: id, bootId: body.bootId });
      bootToken = this.tokens!.spendBootstrap(id, body.bootId);
      if (firstHello) {
        // The node has rebooted, so whatever was asked of the boot before it is moot.
        this.actions.delete(id);
        this.diskJobInterrupted(id, 'booted again');
        this.concludeKexec(id);
        this.kexecLoadFailed.delete(id);
        // A boot from disk (not the deploy environment that ran while boot=disk was set for its next boot).
        if (host.observed(id).boot?.value === 'disk') this.nextBootstraps.set(id, { bootId: body.bootId });
        else this.nextBootstraps.delete(id);
        this.logHello(match, body);
      } else {
        host.log.info({ node: id, bootId: body.bootId }, 'hello repeated with the bootstrap token before the boot token was used: a new boot token replaces it');
      }
    } else if (match.record.bootId !== body.bootId) {
      return this.refuse(req, res, 401, 'token bound to another boot', { node: id, bootId: body.bootId });
    } else {
      this.tokens!.confirm(match);
    }
    const ref = this.bootedImage(id, body.bakedImage) ?? 'unknown';
    const digest = ref !== 'unknown' ? host.services.get('images')?.get(ref)?.digest : undefined;
    this.heard(id);
    if (this.owns(id)) host.observe(id, 'image', ref, digest);
    // Recorded at every hello, news only when it changed (a disk swapped, memory added).
    if (body.hardware) host.observe(id, HARDWARE_FACET, hardwareDigest(body.hardware), JSON.stringify(body.hardware));
    if (body.system) host.observe(id, SYSTEM_FACET, body.system);
    // A boot without systemd (a busybox image after a Debian one) must not keep the last boot's word.
    else if (host.observed(id)[SYSTEM_FACET] && host.observed(id)[SYSTEM_FACET]!.value !== 'none') host.observe(id, SYSTEM_FACET, 'none');
    // The module serving configurations owns the config facet; it hears what the node says it got.
    if (body.config) host.services.get('configReports')?.booted(id, body.config);
    this.kexecSupport.set(id, body.kexec);
    this.observeKexec(id);
    this.respond(res, id, body.bootId, 'running', bootToken);
  }

  private onStatus(req: Request, res: Response, schema: ZodType<StatusReport>): void {
    const accepted = this.accept(req, res, schema);
    if (!accepted) return;
    const { match, body } = accepted;
    if (match.record.bootId === null) return this.refuse(req, res, 409, 'report before hello', { node: match.nodeId, bootId: body.bootId });
    // Reports carry the boot token; a bootstrap here is one used again after its hello.
    if (match.kind === 'bootstrap') return this.bootstrapReplayed(req, res, match, body.bootId);
    if (match.record.bootId !== body.bootId) return this.refuse(req, res, 401, 'token bound to another boot', { node: match.nodeId, bootId: body.bootId });
    this.tokens!.confirm(match);
    this.heard(match.nodeId);
    // What systemd says of the node as a whole: a degraded node is visible, and news only when it changes.
    if (body.system) this.host!.observe(match.nodeId, SYSTEM_FACET, body.system);
    this.diskReport(match.nodeId, body);
    this.kexecReport(match.nodeId, body);
    const next = this.nextDiskBootstrap(match.nodeId, body.bootId, match.record.imageRef);
    this.respond(res, match.nodeId, body.bootId, body.state, undefined, next === undefined ? [] : [`next=${next}`]);
  }

  /** Checks the token, the body and that both name the same node; answers and logs when not. */
  private accept<T extends { node: string }>(req: Request, res: Response, schema: ZodType<T>): { match: TokenMatch; body: T } | undefined {
    const token = bodyToken(req.body);
    if (token === 'invalid') return void this.refuse(req, res, 400, 'invalid body', { issues: 'token: not a token string' });
    if (token === undefined) {
      const reason = req.get('authorization') === undefined ? 'no token' : 'token in a bearer header (an agent of protocol 1: rebuild its image)';
      return void this.refuse(req, res, 401, reason, {});
    }
    const match = this.tokens!.match(token);
    if (!('record' in match)) {
      return void this.refuse(req, res, 401, match.reason === 'superseded' ? 'superseded token' : 'unknown token', match.reason === 'superseded' ? { node: match.nodeId } : {});
    }
    const parsed = schema.safeParse(req.body);
    if (!parsed.success) {
      return void this.refuse(req, res, 400, 'invalid body', { node: match.nodeId, issues: formatZodIssues(parsed.error) });
    }
    if (parsed.data.node !== match.nodeId) return void this.refuse(req, res, 401, 'token of another node', { node: match.nodeId, claimedNode: parsed.data.node });
    if (!this.host!.node(match.nodeId)) return void this.refuse(req, res, 401, 'node no longer enrolled', { node: match.nodeId });
    return { match, body: parsed.data };
  }

  /**
   * A spent bootstrap presented again: refused, logged, and recorded as an observation the operator
   * sees, since whoever presents it read it from the script or the node and may be impersonating it.
   */
  private bootstrapReplayed(req: Request, res: Response, match: TokenMatch, bootId: string): void {
    const host = this.host!;
    const name = host.node(match.nodeId)?.name ?? match.nodeId;
    const remote = req.socket.remoteAddress ?? 'an unknown address';
    host.observe(
      match.nodeId,
      BOOT_TOKEN_FACET,
      'replayed',
      `node ${name}: bootstrap token spent by boot ${match.record.bootId} presented again by boot ${bootId} from ${remote}; refused. It may have been stolen (iPXE script or /proc/cmdline)`,
    );
    this.refuse(req, res, 401, 'bootstrap token already spent', { node: match.nodeId, bootId, spentBy: match.record.bootId });
  }

  /** Malformed JSON or an oversized body never reaches a handler; answer it like a bad body. */
  private onBodyError(err: unknown, req: Request, res: Response, next: NextFunction): void {
    const status = (err as { status?: unknown }).status;
    if (status === 400 || status === 413 || status === 415) return this.refuse(req, res, status === 413 ? 413 : 400, 'unreadable body', { error: (err as Error).message });
    next(err);
  }

  private refuse(req: Request, res: Response, status: number, reason: string, context: Record<string, unknown>): void {
    this.host!.log.warn({ ...context, path: req.originalUrl, remote: req.socket.remoteAddress, status, reason }, 'agent report refused');
    this.metrics!.refused(req.path, reason);
    res.status(status).type('text/plain').send(`${reason}\n`);
  }

  /**
   * The image a node runs, as its hello tells it. A boot from a disk this module wrote runs the
   * image written there, whatever name its tree baked in: a disk-only image imported from a
   * disk file holds another image's tree under its own name.
   */
  private bootedImage(id: NodeId, bakedImage: string | null | undefined): string | undefined {
    const observed = this.host!.observed(id);
    if (observed.boot?.value === 'disk' && observed.disk?.value === 'written') return writtenImage(observed.disk.detail) ?? bakedImage ?? undefined;
    return bakedImage ?? undefined;
  }

  private logHello(match: TokenMatch, body: Hello): void {
    const log = this.host!.log;
    const context = { node: match.nodeId, bootId: body.bootId, image: body.image, bakedImage: body.bakedImage, armedFor: match.record.imageRef, kernel: body.kernel };
    log.info(context, 'agent said hello');
    // The node booted something other than what was served (stale cache, wrong boot path).
    if (body.bakedImage !== match.record.imageRef || body.image !== match.record.imageRef) log.warn(context, 'node booted another image than the one armed');
  }

  private heard(id: NodeId): void {
    const live = this.liveness.get(id);
    if (!live) {
      this.liveness.set(id, { lastSeenAt: Date.now(), lost: false, reports: 1 });
      return;
    }
    if (live.lost) this.host!.log.info({ node: id, silentMs: Date.now() - live.lastSeenAt }, 'agent heard again');
    live.lastSeenAt = Date.now();
    live.lost = false;
    live.reports++;
  }

  /**
   * Records what the report says of the run facet, delivers the pending action and answers. A drain
   * delivered to a running workload is run=draining; a reboot delivered is run=booting, and that
   * boot's later reports (it may take a moment to go) change nothing.
   */
  private respond(res: Response, id: NodeId, bootId: string, state: AgentState, bootToken?: string, helloLines: readonly string[] = []): void {
    const pending = this.actions.get(id);
    let action: AgentAction = 'none';
    if (pending?.action === 'drain' && state === 'drained') this.actions.delete(id);
    else if (pending) action = pending.action;
    const diskJob = action === 'none' ? this.diskJobs.get(id) : undefined;
    if (diskJob) action = diskJob.kind === 'write' ? 'write-disk' : 'erase-disk';

    if (action === 'reboot') {
      if (pending!.deliveredTo === undefined) this.observeRun(id, 'booting');
      pending!.deliveredTo = bootId;
    } else if (pending?.kexec?.executing) {
      // Going: reports from the old kernel in its last moments change nothing.
      this.observeRun(id, 'booting');
    } else {
      this.observeRun(id, action === 'drain' && state === 'running' ? 'draining' : RUN_OF_STATE[state]);
    }
    // Every node sends this every interval: answered without express's send (ETag hashing, header
    // rewriting), work a fixed two-line reply does not need.
    const lines = [...helloLines, ...(diskJob ? jobLines(diskJob, `${res.req.protocol}://${res.req.get('host')}`, id) : []), ...(action === 'kexec' ? kexecLines(pending!.kexec!) : [])];
    const reply = formatReply(this.options.intervalSeconds, action, bootToken, lines);
    this.metrics!.answered(res.req.path, action);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(reply) }).end(reply);
  }

  private observeRun(id: NodeId, value: string): void {
    if (!this.owns(id)) return;
    // Power off means run off; a report in flight as the power went must not say otherwise.
    if (this.host!.observed(id).power?.value === 'off') return;
    this.host!.observe(id, 'run', value);
  }

  private owns(id: NodeId): boolean {
    const node = this.host!.node(id);
    return node !== undefined && this.claims(node);
  }

  /** Silence past the deadline is an observation: run=lost, for nodes whose agent should be talking. */
  private sweep(): void {
    const host = this.host!;
    const now = Date.now();
    for (const [id, live] of this.liveness) {
      if (live.lost || now - live.lastSeenAt <= this.options.lostAfterMs) continue;
      const observed = host.observed(id);
      if (!this.owns(id) || !LIVE_RUN.has(observed.run?.value ?? '') || observed.power?.value === 'off') {
        // Nothing to lose (off, booting, already failed): forget it until the agent speaks again.
        this.liveness.delete(id);
        continue;
      }
      live.lost = true;
      const silentS = Math.round((now - live.lastSeenAt) / 1000);
      host.log.warn({ node: id, silentS }, 'agent silent past its deadline');
      this.metrics!.lost();
      host.observe(id, 'run', 'lost', `no heartbeat for ${silentS} s`);
      this.diskJobInterrupted(id, 'went silent');
    }
  }
}
