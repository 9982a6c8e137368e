// The power facet for any BMC protocol. A protocol module (IPMI, Redfish) supplies a connector that
// opens sessions to one node's BMC; this driver does the rest the same way for all of them: steps,
// polling with jitter (faster while a step waits), the next boot device before power-on, graceful
// then forced power-off, and a global cap on BMC sessions in use at once. It is a driver the BMC
// modules share, not part of the engine: its session cap is its own, beside the engine's per-step
// and per-BMC action slots (src/engine/slots.ts).
import type { Logger } from 'pino';
import type { BmcPowerOptions } from '../contracts/bmc.js';
import type { NodeId, NodeRecord } from '../domain/node.js';
import type { FacetDriver, ModuleHost, ShoalModule, StepRequest } from '../engine/module.js';

/**
 * What a BMC says of power. `powering-on`/`powering-off`: a change under way, to be waited for
 * rather than asked for again. `unknown`: it answered without saying (Redfish PowerState is optional).
 */
export type BmcPowerState = 'on' | 'off' | 'powering-on' | 'powering-off' | 'unknown';

/** A change under way counts as where it comes from: a step is confirmed only once it is done. */
const OBSERVED_POWER: Record<Exclude<BmcPowerState, 'unknown'>, 'on' | 'off'> = {
  on: 'on',
  off: 'off',
  'powering-on': 'off',
  'powering-off': 'on',
};

export interface BmcSession {
  powerState(): Promise<BmcPowerState>;
  powerOn(): Promise<void>;
  /** ACPI shutdown request: the OS powers the machine off. */
  softOff(): Promise<void>;
  forceOff(): Promise<void>;
  setNextBoot(device: 'pxe' | 'disk', firmware: NodeRecord['firmware']): Promise<void>;
  close(): Promise<void>;
}

export interface BmcConnector {
  claims(node: NodeRecord): boolean;
  /**
   * Opens (or reuses) a session; rejects with a clear error on bad credentials or no answer. The
   * session logs to `log` what it did differently from what was asked (e.g. a boot mode left out).
   */
  connect(node: NodeRecord, password: string | undefined, log: Logger): Promise<BmcSession>;
  /** Releases what the connector shares between sessions (a socket), after every session closed. */
  close?(): Promise<void>;
}

export const DEFAULT_BMC_POWER_OPTIONS: BmcPowerOptions = { pollMs: 30_000, fastPollMs: 1_000, gracefulOffMs: 60_000, forcedOffMs: 20_000, maxConcurrent: 32 };

export class BmcPowerModule implements ShoalModule {
  readonly drivers: FacetDriver[];
  private host: ModuleHost | undefined;
  private log: Logger | undefined;
  private readonly sessions = new Map<NodeId, Promise<BmcSession>>();
  private readonly pollTimers = new Map<NodeId, NodeJS.Timeout>();
  private readonly options: BmcPowerOptions;
  private inUse = 0;
  private readonly waiting: (() => void)[] = [];
  private stopped = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    readonly name: string,
    private readonly connector: BmcConnector,
    options: Partial<BmcPowerOptions> = {},
  ) {
    this.options = { ...DEFAULT_BMC_POWER_OPTIONS, ...options };
    this.drivers = [
      {
        facet: 'power',
        claims: (node) => connector.claims(node),
        steps: { 'power.probe': (r) => this.probe(r), 'power.on': (r) => this.powerOn(r), 'power.off': (r) => this.powerOff(r) },
      },
    ];
  }

  start(host: ModuleHost): void {
    this.host = host;
    this.log = host.log;
    for (const node of host.nodes()) if (this.connector.claims(node)) this.schedulePoll(node.id, this.jitter(this.options.fastPollMs));
    // Enrolled, changed or removed nodes: start, keep or stop their polls.
    this.unsubscribe = host.onNodeChange((id) => {
      const node = host.node(id);
      if (!node || !this.connector.claims(node)) return this.forget(id);
      if (!this.pollTimers.has(id)) this.schedulePoll(id, this.jitter(this.options.fastPollMs));
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    for (const timer of this.pollTimers.values()) clearTimeout(timer);
    this.pollTimers.clear();
    await Promise.allSettled([...this.sessions.values()].map(async (s) => (await s).close()));
    this.sessions.clear();
    await this.connector.close?.();
  }

  private async probe({ node, bmcPassword }: StepRequest): Promise<void> {
    this.observePower(node.id, await this.withSession(node, bmcPassword, (s) => s.powerState()));
  }

  private async powerOn({ node, bmcPassword, signal }: StepRequest): Promise<void> {
    const boot = this.host!.observed(node.id).boot?.value;
    await this.withSession(node, bmcPassword, async (s) => {
      // The boot the plan prepared must be the one the firmware takes.
      if (boot === 'armed' || boot === 'deploy') await s.setNextBoot('pxe', node.firmware);
      if (boot === 'disk') await s.setNextBoot('disk', node.firmware);
      if ((await s.powerState()) === 'off') await s.powerOn();
    });
    // Sent once: a BMC slow to show the change is waited for, not asked again.
    this.pollUntil(node, bmcPassword, 'on', signal);
  }

  private async powerOff({ node, bmcPassword, signal }: StepRequest): Promise<void> {
    // A retried step may follow a request that timed out but was carried out: read before sending.
    const before = await this.withSession(node, bmcPassword, (s) => s.powerState());
    this.observePower(node.id, before);
    if (before === 'off') return;
    // A node whose OS stopped answering (lost, hung) will not honour the power button either.
    const run = this.host!.observed(node.id).run?.value;
    let forcedAt: number | undefined;
    if (run === 'lost' || run === 'hung') {
      this.log?.info({ node: node.name, run }, 'node is not answering; forcing power off');
      forcedAt = Date.now();
      await this.withSession(node, bmcPassword, (s) => s.forceOff());
    } else if (before !== 'powering-off') {
      await this.withSession(node, bmcPassword, (s) => s.softOff());
    }
    const gracefulDeadline = Date.now() + this.options.gracefulOffMs;
    this.pollUntil(node, bmcPassword, 'off', signal, async (state) => {
      // A change under way, or a BMC that cannot tell: wait rather than ask again.
      if (state !== 'on') return;
      const now = Date.now();
      if (now < (forcedAt === undefined ? gracefulDeadline : forcedAt + this.options.forcedOffMs)) return;
      // This reading, taken just now, still says on: the forced off (even one that timed out) did not happen.
      this.log?.info(
        { node: node.name },
        forcedAt === undefined ? 'graceful power-off took too long; forcing' : `forced power-off not seen within ${this.options.forcedOffMs} ms; forcing again`,
      );
      forcedAt = now;
      await this.withSession(node, bmcPassword, (s) => s.forceOff());
    });
  }

  /**
   * Polls fast until the BMC reports `want` or the step ends (confirmed, superseded or timed out);
   * `each` sees every other reading, one at a time.
   */
  private pollUntil(
    node: NodeRecord,
    password: string | undefined,
    want: 'on' | 'off',
    signal: AbortSignal,
    each?: (state: BmcPowerState) => Promise<void>,
  ): void {
    const tick = async () => {
      if (signal.aborted || this.stopped) return;
      try {
        const state = await this.withSession(node, password, (s) => s.powerState());
        this.observePower(node.id, state);
        if (state === want) return;
        await each?.(state);
      } catch (err) {
        this.log?.warn({ node: node.name, err: (err as Error).message }, 'power poll failed');
      }
      setTimeout(() => void tick(), this.options.fastPollMs);
    };
    setTimeout(() => void tick(), this.options.fastPollMs);
  }

  private schedulePoll(id: NodeId, delay: number): void {
    if (this.stopped) return;
    this.pollTimers.set(
      id,
      setTimeout(() => void this.poll(id), delay),
    );
  }

  /** The background poll: drift (power changed behind the appliance's back) and a BMC gone quiet. */
  private async poll(id: NodeId): Promise<void> {
    const node = this.host?.node(id);
    if (!node || !this.connector.claims(node)) return this.forget(id);
    try {
      this.observePower(id, await this.withSession(node, this.host!.bmcPassword(id), (s) => s.powerState()));
    } catch (err) {
      this.host!.observe(id, 'power', 'error', (err as Error).message);
    }
    if (this.host?.node(id)) this.schedulePoll(id, this.jitter(this.options.pollMs));
  }

  private observePower(id: NodeId, state: BmcPowerState): void {
    if (state === 'unknown') this.host!.observe(id, 'power', 'unknown', 'the BMC answered without a power state');
    else this.host!.observe(id, 'power', OBSERVED_POWER[state]);
  }

  private forget(id: NodeId): void {
    clearTimeout(this.pollTimers.get(id));
    this.pollTimers.delete(id);
    const session = this.sessions.get(id);
    this.sessions.delete(id);
    void session?.then((s) => s.close()).catch(() => undefined);
  }

  /** Runs `fn` on the node's session under the module-wide cap; a failed session is dropped and reopened next time. */
  private async withSession<T>(node: NodeRecord, password: string | undefined, fn: (s: BmcSession) => Promise<T>): Promise<T> {
    if (this.inUse >= this.options.maxConcurrent) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inUse++;
    try {
      let session = this.sessions.get(node.id);
      if (!session) {
        session = this.connector.connect(node, password, this.log!);
        this.sessions.set(node.id, session);
      }
      try {
        return await fn(await session);
      } catch (err) {
        if (this.sessions.get(node.id) === session) this.sessions.delete(node.id);
        void session.then((s) => s.close()).catch(() => undefined);
        throw err;
      }
    } finally {
      this.inUse--;
      this.waiting.shift()?.();
    }
  }

  private jitter(ms: number): number {
    return Math.round(ms * (0.75 + Math.random() * 0.5));
  }
}
