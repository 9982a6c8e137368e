// The appliance inside a lab: its DHCP, TFTP and HTTP servers on the lab's bridge, its BMC modules
// reaching the lab's BMCs, and its API also on a unix socket. The test process (outside the
// namespace) reaches that API through a loopback port forwarded to the socket, so nothing listens
// on an address outside the namespace except 127.0.0.1.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ApiClient } from '../../src/cli/client.js';
import { DEFAULT_CACHE_DIR, type BuiltImage } from '../../images/catalog.js';
import type { Lab } from './lab.js';
import { SocketForward } from './forward.js';
import { isAlive, killProcess, pollUntil, pollUntilAsync, type TrackedProcess } from './processes.js';
import type { IpmiBmc } from './ipmi-bmc.js';
import type { RedfishBmc } from './redfish-bmc.js';
import type { Vm } from './vm.js';

export interface LabApplianceOptions {
  /** Built images the appliance imports at start (ensureImages). */
  images: BuiltImage[];
  /** Agent heartbeat interval; short in tests so lost nodes show quickly. */
  heartbeatSeconds?: number;
  /** Silence before a node is lost (default the agent module's: 3 intervals + 15 s). */
  lostAfterMs?: number;
  /** Engine settings merged over the defaults (retry budget, backoff, timeouts). */
  engine?: Record<string, unknown>;
  /** Addresses handed to machines not in the inventory, so they can be discovered (host numbers on the /24). */
  pool?: { start: number; end: number };
  /** The loopback port the API is forwarded to (default: any free port). */
  forwardPort?: number;
}

export interface NodeView {
  id: string;
  name: string;
  phase: string;
  observed: Record<string, { value: string; detail?: string; at?: string } | undefined>;
  desired: Record<string, string | undefined>;
  reason?: string;
  step?: { name: string; [key: string]: unknown };
  lastError?: string;
  [key: string]: unknown;
}

const HTTP_PORT = 8080;

export class LabAppliance {
  readonly dataDir: string;
  readonly configPath: string;
  readonly socketPath: string;
  /** How VMs reach it: the iPXE scripts and the agent use this. */
  readonly advertiseUrl: string;
  private process: TrackedProcess | undefined;
  private forwarder: SocketForward | undefined;
  private client: ApiClient | undefined;
  /** Loopback URL of the forwarded API, for tools outside the namespace (CLI, browser). */
  url = '';

  private constructor(
    readonly lab: Lab,
    readonly options: LabApplianceOptions,
  ) {
    const dir = join(lab.dir, 'appliance');
    mkdirSync(dir, { recursive: true });
    this.dataDir = join(dir, 'data');
    this.configPath = join(dir, 'config.yaml');
    this.socketPath = join(dir, 'api.sock');
    this.advertiseUrl = `http://${lab.headIPv4}:${HTTP_PORT}`;
    writeFileSync(this.configPath, stringify(this.config()));
  }

  static async start(lab: Lab, options: LabApplianceOptions): Promise<LabAppliance> {
    const appliance = new LabAppliance(lab, options);
    await appliance.forward();
    await appliance.launch();
    return appliance;
  }

  get api(): ApiClient {
    if (!this.client) throw new Error('the appliance has not started');
    return this.client;
  }

  /** The API token, made by the appliance on its first start. */
  get token(): string {
    return readFileSync(join(this.dataDir, 'api-token'), 'utf8').trim();
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  get logFile(): string {
    return this.process?.logFile ?? join(this.lab.dir, 'shoal.log');
  }

  /**
   * The appliance killed with SIGKILL: no shutdown of any kind, as a crash or power loss. Returns
   * once it is gone (a restart right after found it still dying).
   */
  kill(): void {
    const pid = this.process?.pid;
    if (pid !== undefined && !killProcess(pid)) throw new Error(`the appliance (pid ${pid}) survived SIGKILL for 2 s`);
  }

  /** Starts the appliance again on the same data directory and configuration. */
  async restart(): Promise<void> {
    if (this.process && isAlive(this.process.pid)) throw new Error('the appliance is still running; kill() it first');
    await this.launch();
  }

  /**
   * SIGTERM, then SIGKILL if the appliance has not exited after 15 s; then every connection
   * through the forward is destroyed rather than waited for (a client's keep-alive or an SSE
   * stream would hold the forwarder open). Bounded: it throws, naming what overran, instead of
   * hanging the suite's teardown.
   */
  async stop(): Promise<void> {
    const problems: string[] = [];
    const pid = this.process?.pid;
    if (pid !== undefined && isAlive(pid)) {
      process.kill(pid, 'SIGTERM');
      const exited = await pollUntil('the appliance to exit on SIGTERM', 15_000, () => (isAlive(pid) ? undefined : true)).catch((err: Error) => {
        problems.push(`${err.message}; killed`);
        return false;
      });
      if (!exited && !killProcess(pid)) problems.push(`the appliance (pid ${pid}) survived SIGKILL`);
    }
    const forwarder = this.forwarder;
    this.forwarder = undefined;
    await forwarder?.close().catch((err: Error) => problems.push(err.message));
    if (problems.length > 0) throw new Error(`LabAppliance.stop: ${problems.join('; ')} (log: ${this.logFile})`);
  }

  /** Enrolls a VM as a node behind its BMC, with the lab address the DHCP server reserves for it. */
  async enroll(vm: Vm, bmc: IpmiBmc | RedfishBmc, options: { labels?: Record<string, string>; password?: string } = {}): Promise<NodeView> {
    const url = 'host' in bmc ? `ipmi://${bmc.user}@${bmc.host}:${bmc.port}` : bmc.url.replace(/^http:\/\//, `redfish+http://${bmc.user}@`).replace(/^https:\/\//, `redfish://${bmc.user}@`);
    const index = this.lab.vms.indexOf(vm);
    return this.api.request<NodeView>('POST', '/nodes', {
      name: vm.name,
      macs: [vm.mac],
      bmc: url,
      bmcPassword: options.password ?? bmc.password,
      firmware: vm.firmware,
      ipv4: this.lab.ipv4(100 + index),
      labels: options.labels ?? {},
    });
  }

  node(name: string): Promise<NodeView> {
    return this.api.request<NodeView>('GET', `/nodes/${encodeURIComponent(name)}`);
  }

  setDesired(name: string, patch: Record<string, string | null>): Promise<unknown> {
    return this.api.request('PATCH', `/nodes/${encodeURIComponent(name)}/desired`, patch);
  }

  /**
   * Polls the node until `accept` says yes. On the deadline the error names the node's last
   * state, its failure if any, and the tail of the appliance log, so a failed run says where it stood.
   */
  async waitFor(name: string, what: string, accept: (node: NodeView) => boolean, timeoutMs: number): Promise<NodeView> {
    const deadline = Date.now() + timeoutMs;
    let last: NodeView | undefined;
    for (;;) {
      last = await this.node(name).catch(() => last);
      if (last && accept(last)) return last;
      if (Date.now() > deadline) {
        const observed = last ? Object.entries(last.observed).map(([facet, o]) => `${facet}=${o?.value ?? '?'}${o?.detail ? ` (${o.detail})` : ''}`).join(' ') : 'never read';
        throw new Error(`${name}: not ${what} after ${timeoutMs} ms; phase ${last?.phase ?? '?'}, observed ${observed}${last?.reason ? `, reason: ${last.reason}` : ''}${last?.lastError ? `, last error: ${last.lastError}` : ''}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  private config(): Record<string, unknown> {
    const lab = this.lab;
    const pool = this.options.pool ?? { start: 200, end: 220 };
    return {
      dataDir: this.dataDir,
      // Plain HTTP: the VMs fetch their boot files from the API's listener (advertiseUrl), and the
      // test process reaches the API through the socket's loopback forward only.
      api: { listen: lab.headIPv4, port: HTTP_PORT, socket: this.socketPath, tls: 'off' },
      log: { level: 'debug' },
      engine: { backoffBaseMs: 1_000, backoffMaxMs: 10_000, ...this.options.engine },
      modules: [
        { name: 'ipmi', options: {} },
        { name: 'redfish', options: {} },
        { name: 'images', options: { import: this.options.images.map((image) => image.dir) } },
        // Container image imports (POST /images/import), with the build cache the tests' images came from.
        { name: 'oci', options: { cacheDir: DEFAULT_CACHE_DIR } },
        {
          name: 'agent',
          options: {
            intervalSeconds: this.options.heartbeatSeconds ?? 2,
            ...(this.options.lostAfterMs ? { lostAfterMs: this.options.lostAfterMs } : {}),
          },
        },
        {
          name: 'pxe',
          options: {
            advertiseUrl: this.advertiseUrl,
            dhcp: {
              mode: 'full',
              interface: { name: lab.bridge, address: lab.headIPv4 },
              subnets: [{ cidr: lab.ipv4Prefix, pool: { start: lab.ipv4(pool.start), end: lab.ipv4(pool.end) } }],
            },
            tftp: { address: lab.headIPv4 },
          },
        },
      ],
    };
  }

  private async launch(): Promise<void> {
    this.process = this.lab.spawnTs('shoal', 'src/cli/main.ts', ['serve', '--config', this.configPath]);
    const pid = this.process.pid;
    await pollUntil('the appliance to listen on its API socket', 60_000, () => {
      if (!isAlive(pid)) throw new Error(`the appliance exited at start; see ${this.logFile}`);
      return existsSync(this.socketPath) && existsSync(join(this.dataDir, 'api-token')) ? true : undefined;
    });
    this.client = new ApiClient({ url: this.url, dataDir: this.dataDir });
    await pollUntilAsync('the appliance to answer', 30_000, () => this.api.request('GET', '/nodes').then(() => true, () => undefined));
  }

  /** A loopback port whose connections are piped to the API socket (which outlives appliance restarts by path). */
  private async forward(): Promise<void> {
    this.forwarder = await SocketForward.listen(this.socketPath, this.options.forwardPort);
    this.url = this.forwarder.url;
  }
}
