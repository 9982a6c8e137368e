// What the agent module's tests run it with: a real Appliance, plus a small stand-in module for
// the facets other modules own (power as a BMC module would, boot as the pxe module arms it,
// and an image catalog as the images module provides it). Kept under test/ so the
// release bundle (tsconfig.build.json compiles src/ and modules/) does not ship it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import type { NodeId, NodeRecord } from '../../src/domain/node.js';
import { stepsOf, type ModuleHost, type ShoalModule, type StepHandler } from '../../src/engine/module.js';
import type { StepName } from '../../src/engine/facet.js';
import type { BootTokens, ImageInfo } from '../../src/contracts/services.js';
import { createModule } from '../../modules/agent/index.js';
import type { AgentModule } from '../../modules/agent/module.js';

export const DIGESTS: Record<string, string> = {
  'compute@1': 'a'.repeat(64),
  'compute@2': 'b'.repeat(64),
  'deploy@1': 'c'.repeat(64),
  'debian@12': 'd'.repeat(64),
  /** A disk-only image (an imported disk file): written to disks, never network-booted. */
  'site@1': '9'.repeat(64),
};

/** debian@12's disk in the stand-in catalog: 64 MiB raw, zstd-compressed, with a boot environment block. */
export const STAND_IN_DISK = { sha256: 'e'.repeat(64), size: 1_000_000, path: '/images/debian/12/disk.raw.zst', format: 'zstd', rawSize: 64 * 1024 * 1024, rawSha256: 'f'.repeat(64), bootEnv: { offset: 2 * 1024 * 1024, size: 1024 } } as const;

function imageInfo(ref: string, digest: string): ImageInfo {
  const [name, version] = ref.split('@') as [string, string];
  const file = { sha256: digest, size: 1, path: `/images/${name}/${version}/file` };
  if (ref === 'site@1') return { ref, name, version, arch: 'x86_64', digest, cmdline: '', disk: { ...STAND_IN_DISK, path: '/images/site/1/disk.raw.zst' } };
  return { ref, name, version, arch: 'x86_64', digest, kernel: file, initrd: file, cmdline: '', ...(ref === 'debian@12' ? { disk: { ...STAND_IN_DISK } } : {}) };
}

/** Power and boot of `ipmi://` nodes, in memory; the image catalog. */
export class StandInModule implements ShoalModule {
  readonly name = 'stand-in';
  readonly power = new Map<NodeId, 'on' | 'off'>();
  /** The bootstrap token each node's armed boot carries, as the pxe module would put it on the kernel command line. */
  readonly armedTokens = new Map<NodeId, string>();
  /** Called when a node is powered off: whatever runs on it must stop. */
  onPowerOff: (id: NodeId) => void = () => {};
  private host: ModuleHost | undefined;
  /** One handler per step of the facets this module drives. */
  private readonly handlers: Record<StepName, StepHandler> = {
    'power.probe': async ({ node }) => {
      const host = this.host!;
      host.observe(node.id, 'power', this.power.get(node.id) ?? 'off');
    },
    'power.on': async ({ node }) => {
      const host = this.host!;
      this.power.set(node.id, 'on');
      host.observe(node.id, 'power', 'on');
      // An armed boot is served as the node powers on (the pxe module sees the kernel fetched);
      // that spends the arming, so the next power-on needs a new one, with a new token.
      if (host.observed(node.id).boot?.value === 'armed') host.observe(node.id, 'boot', 'kernel');
      if (host.observed(node.id).boot?.value === 'deploy') host.observe(node.id, 'boot', 'deployed', 'deploy@1');
    },
    'power.off': async ({ node }) => {
      const host = this.host!;
      this.power.set(node.id, 'off');
      this.onPowerOff(node.id);
      host.observe(node.id, 'power', 'off');
    },
    'boot.arm': async ({ node, desired }) => {
      if (!desired.image) throw new Error('no desired image to arm');
      this.arm(node.id, desired.image);
    },
    // The engine refuses a boot driver without it; a BMC module would set the next boot device.
    'boot.disk': async ({ node }) => void this.host!.observe(node.id, 'boot', 'disk'),
    'boot.deploy': async ({ node }) => {
      this.armedTokens.set(node.id, this.bootTokens().issue(node.id, 'deploy@1'));
      this.host!.observe(node.id, 'boot', 'deploy', 'armed deploy@1');
    },
  };
  readonly drivers = ['power', 'boot'].map((facet) => ({
    facet,
    claims: (node: NodeRecord) => node.bmc.scheme === 'ipmi',
    steps: stepsOf(facet, this.handlers),
  }));

  start(host: ModuleHost): void {
    this.host = host;
    const images = Object.entries(DIGESTS).map(([ref, digest]) => imageInfo(ref, digest));
    host.services.provide('images', {
      get: (ref) => images.find((i) => i.ref === ref),
      byDigest: (digest) => images.find((i) => i.digest === digest),
      list: () => images,
    });
    host.services.provide('configReports', { booted: (nodeId, digest) => void this.configReports.push({ nodeId, digest }) });
    // As the pxe module hands an armed boot to a running agent: its bootstrap on the command line.
    host.services.provide('armedBoots', {
      forKexec: (id) => {
        const boot = host.observed(id).boot;
        const image = images.find((i) => i.ref === boot?.detail);
        const bootstrap = this.armedTokens.get(id);
        if (boot?.value !== 'armed' || !image?.kernel || !image.initrd || !bootstrap) return { problem: `node ${id} is not armed` };
        return { image: image.ref, kernel: image.kernel, initrd: image.initrd, cmdline: `console=ttyS0 shoal.node=${id} shoal.token=${bootstrap} shoal.image=${image.ref}` };
      },
      kexecStarted: (id) => host.observe(id, 'boot', 'kexec', host.observed(id).boot?.detail),
    });
  }

  /** What the agent module passed on of the configuration digests hellos reported, as the pxe module would hear it. */
  readonly configReports: { nodeId: NodeId; digest: string }[] = [];

  /** Arms a network boot as the pxe module does: a bootstrap token for it, then boot=armed. Returns the bootstrap. */
  arm(id: NodeId, imageRef = 'compute@1'): string {
    const bootstrap = this.bootTokens().issue(id, imageRef);
    this.armedTokens.set(id, bootstrap);
    this.host!.observe(id, 'boot', 'armed', imageRef);
    return bootstrap;
  }

  /** The boot tokens service as the pxe module finds it. */
  bootTokens(): BootTokens {
    const tokens = this.host?.services.get('bootTokens');
    if (!tokens) throw new Error('no module provides bootTokens');
    return tokens;
  }

}

export interface AgentReply {
  status: number;
  text: string;
  contentType: string | null;
}

/** The value of `key` in a `key=value` reply (the last one wins), as the agent reads it. */
export function replyValue(text: string, key: string): string | undefined {
  return text
    .split(/\r?\n/)
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1))
    .at(-1);
}

/** A heartbeat's body as the agent sends it, with `more` over the usual fields. */
export const beat = (node: NodeId, bootId: string, more: Record<string, unknown> = {}) => ({ node, bootId, uptime: 9.5, state: 'running', ...more });

export interface AgentTestAppliance {
  appliance: Appliance;
  agent: AgentModule;
  standIn: StandInModule;
  dataDir: string;
  /** Every log line so far, parsed. */
  logs(): Record<string, unknown>[];
  /** The raw log text, to check no token ever reaches it. */
  logText(): string;
  enroll(name: string): Promise<NodeRecord>;
  /** Calls the operator API with the first admin's token. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** POSTs as the agent does: `token` (when given) joins an object body; a string body is sent as it is. */
  post(path: string, token: string | undefined, body: unknown, headers?: Record<string, string>): Promise<AgentReply>;
  /** Heartbeats as boot `bootId` until a reply carries `action` (as the agent waits for one); returns that reply. */
  beatUntil(id: NodeId, token: string, bootId: string, action: string, more?: Record<string, unknown>): Promise<string>;
  stop(): Promise<void>;
  close(): Promise<void>;
}

export async function startAgentAppliance(opts: { dataDir?: string; agentOptions?: Record<string, unknown>; timeouts?: Record<string, number> } = {}): Promise<AgentTestAppliance> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'shoal-agent-module-'));
  let logText = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logText += chunk.toString('utf8');
      done();
    },
  });
  const config = loadConfig(undefined, {
    dataDir,
    // Plain HTTP, agent routes on the API's listener: the tests post to appliance.url.
    api: { listen: '127.0.0.1', port: 0, tls: 'off' },
    engine: { retryBudget: 2, backoffBaseMs: 50, backoffMaxMs: 500, limits: {}, timeouts: opts.timeouts ?? {} },
  });
  const standIn = new StandInModule();
  const agent = createModule(opts.agentOptions ?? { intervalSeconds: 1, lostAfterMs: 1_500 });
  const appliance = await Appliance.start(config, { modules: [standIn, agent], log: createLogger('info', sink) });
  let macs = 0;
  const testAppliance: AgentTestAppliance = {
    appliance,
    agent,
    standIn,
    dataDir,
    logs: () =>
      logText
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    logText: () => logText,
    async enroll(name) {
      macs++;
      const mac = `52:54:00:aa:00:${macs.toString(16).padStart(2, '0')}`;
      const [node] = await appliance.state.addNodes(
        [{ spec: { name, macs: [mac], bmc: { scheme: 'ipmi', host: '127.0.0.1', port: 10_000 + macs }, arch: 'x86_64', firmware: 'bios', labels: {} } }],
        'test',
      );
      return node!;
    },
    async api(method, path, body) {
      const res = await fetch(`${appliance.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${appliance.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async post(path, token, body, headers = {}) {
      const res = await fetch(`${appliance.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify({ ...(body as object), ...(token ? { token } : {}) }),
      });
      return { status: res.status, text: await res.text(), contentType: res.headers.get('content-type') };
    },
    async beatUntil(id, token, bootId, action, more = {}) {
      const wanted = `action=${action}\n`;
      let reply = '';
      for (let i = 0; i < 300; i++) {
        reply = (await testAppliance.post('/agent/v1/heartbeat', token, beat(id, bootId, more))).text;
        if (reply.includes(wanted)) return reply;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`no heartbeat reply of ${id} carried action=${action} after 300 tries; the last said:\n${reply}`);
    },
    stop: async () => void (await appliance.stop()),
    async close() {
      await appliance.stop();
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return testAppliance;
}
