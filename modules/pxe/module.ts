// The pxe module: owns the boot facet of real nodes. boot.arm mints a per-boot token and stores the
// node's boot plan; DHCP, TFTP and HTTP then serve the chain firmware → iPXE → kernel, and each
// request seen moves the node's boot facet (dhcp → loader → kernel) so an operator sees where a
// boot stopped. Each armed boot also gets a NoCloud seed secret, and cloud-init on the node reads
// the node's configuration (meta-data, user-data, vendor-data, network-config) at /nocloud/SECRET/
// for as long as that boot is the node's armed one; a network-config the node's profiles set is also
// on its kernel command line, where cloud-init applies it.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Response } from 'express';
import { KERNEL_CMDLINE_MAX, type NoCloudSeed } from '../../src/domain/nocloud.js';
import { z } from 'zod';
import type { FacetDriver, ModuleHost, ShoalModule, StepRequest } from '../../src/engine/module.js';
import { NETWORK_BOOT_STAGES } from '../../src/facets/standard.js';
import { configFacet } from '../../src/facets/config.js';
import { normalizeMac, type NodeId, type NodeRecord } from '../../src/domain/node.js';
import { DhcpServer, SqliteLeaseStore, type DhcpTransport, type LeaseStore } from './dhcp/index.js';
import { TftpServer, bufferSource, confinedSegments, directoryResolver, type TftpResolution, type TftpResolver } from './tftp/index.js';
import {
  GRUB_ENTRY_CONFIG,
  GRUB_PREFIX_CONFIG,
  grubCommandLineProblem,
  kernelCommandLine,
  localBootGrubConfig,
  localBootScript,
  networkBootGrubConfig,
  networkBootScript,
  type BootPlan,
  type NetworkBootPlan,
} from './script.js';
import { DiscoveredStore } from './discovered.js';
import { PxeMetrics, type BootFileRoute } from './metrics.js';
import { BucketOptionsSchema, RateLimiter } from './rate-limit.js';
import { HttpProblem } from '../../src/api/problem.js';
import { openApiParts } from '../../src/api/openapi.js';
import type { KexecBoot } from '../../src/contracts/services.js';

const NORMALIZED_MAC = /^(?:[0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** The files a booting node fetches through /boot/<mac>/, each redirected to the image store. */
const BOOT_FILE_ROUTES = new Map<string, 'kernel' | 'initrd' | 'rootfs'>([
  ['vmlinuz', 'kernel'],
  ['initrd.img', 'initrd'],
  ['rootfs', 'rootfs'],
]);

/** The Secure Boot path's TFTP names: the node's boot program, and where shim looks for its next stage. */
export const SHIM_FILE = 'shimx64.efi';
const SHIM_NEXT_STAGE = 'grubx64.efi';
const GRUB_NODE_CONFIG = /^grub\/node\/([^/]+)\.cfg$/;
const GRUB_BOOT_FILE = /^boot\/([^/]+)\/(vmlinuz|initrd\.img)$/;
/** Image files GRUB fetched over TFTP kept in memory, the most recent first: GRUB may ask for one twice. */
const GRUB_FILE_CACHE_ENTRIES = 4;
/** Boot values of a boot armed and not yet at its kernel: taken over, such a node is armed again by its new owner. */
const REARMED_ON_TAKEOVER = new Set(['armed', 'dhcp', 'loader', 'deploy']);

/** The answer to a boot request for a node another appliance serves: 503 with the reason, and when to ask again. */
function refuseElsewhere(res: Response, reason: string): void {
  res.status(503).set('retry-after', '5').type('text/plain').send(`${reason}\n`);
}

/** A MAC from a URL as the inventory keys it (either case, ':' or '-'), or undefined when it is not one. */
function macFromUrl(raw: string): string | undefined {
  const mac = normalizeMac(raw);
  return NORMALIZED_MAC.test(mac) ? mac : undefined;
}

export const PxeOptionsSchema = z
  .object({
    /** How nodes reach the appliance's HTTP server, e.g. http://10.213.0.1:8080 */
    advertiseUrl: z.url(),
    /** DHCP on the provisioning interface; leave out where another server hands out addresses and boot files. */
    dhcp: z
      .object({
        mode: z.enum(['full', 'proxy']).default('full'),
        interface: z.object({ name: z.string().min(1), address: z.ipv4() }).strict(),
        subnets: z.array(z.record(z.string(), z.unknown())).default([]),
        leaseSeconds: z.number().int().positive().default(3600),
      })
      .strict()
      .optional(),
    /** TFTP for firmware that needs its iPXE binary that way. */
    tftp: z
      .object({
        address: z.ipv4(),
        port: z.number().int().min(0).max(65535).default(69),
        /** Worker threads for transfers (default one per core, at most 4; 0: all on the main thread). */
        transferThreads: z.number().int().min(0).max(16).optional(),
      })
      .strict()
      .optional(),
    ipxeDir: z.string().default('/usr/lib/ipxe'),
    /**
     * The Secure Boot path (nodes with secureBoot: true): shim, signed by Microsoft's UEFI CA, is the
     * node's boot program, and loads grubx64.efi from beside it, Debian's signed network GRUB
     * (Debian's shim-signed and grub-efi-amd64-signed).
     */
    secureBoot: z
      .object({
        shim: z.string().min(1).default('/usr/lib/shim/shimx64.efi.signed'),
        grub: z.string().min(1).default('/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed'),
      })
      .strict()
      .default({ shim: '/usr/lib/shim/shimx64.efi.signed', grub: '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed' }),
    /** The image boot.deploy network-boots: the RAM environment whose agent writes and erases disks (images/recipes.ts). */
    deployImage: z.string().default('deploy@1'),
    /**
     * iPXE script fetches allowed per MAC and per source address (429 with Retry-After past them).
     * A boot fetches its script once or twice, and iPXE retries a failed fetch. The source is each
     * node's own address even behind a DHCP relay (the relay forwards DHCP only); it is shared only
     * behind NAT or an HTTP proxy, where a whole rack may power on at once, hence its large burst.
     */
    scriptRateLimit: z
      .object({
        perMac: BucketOptionsSchema.default({ burst: 10, perMinute: 6 }),
        perSource: BucketOptionsSchema.default({ burst: 1000, perMinute: 3000 }),
      })
      .strict()
      .default({ perMac: { burst: 10, perMinute: 6 }, perSource: { burst: 1000, perMinute: 3000 } }),
  })
  .strict();
export type PxeOptions = z.infer<typeof PxeOptionsSchema>;


/** Stand-ins for what the module otherwise opens itself, so tests need no privileged sockets. */
export interface PxeModuleDeps {
  /** Replaces the DHCP server's UDP sockets on the provisioning interface. */
  dhcpTransport?: DhcpTransport;
}

export class PxeModule implements ShoalModule {
  readonly name = 'pxe';
  readonly openapi = {
    '/discovered': {
      get: {
        summary: 'Machines that network-booted but are not in the inventory; enroll one with POST /nodes and its MAC',
        responses: { 200: openApiParts.ok('the discovered machines'), 401: openApiParts.problem },
      },
    },
    '/discovered/{mac}': {
      delete: {
        summary: 'Forget a discovered machine',
        parameters: [openApiParts.path('mac', 'e.g. 52:54:00:12:34:56')],
        responses: { 204: { description: 'forgotten' }, 400: openApiParts.problem, 401: openApiParts.problem, 404: openApiParts.problem },
      },
    },
  };
  readonly drivers: FacetDriver[];
  readonly facets = [configFacet];
  private host: ModuleHost | undefined;
  /** The configuration digest each node's running boot was armed with, from its kernel fetch on. */
  private booted = new Map<NodeId, string>();
  private bootedPath = '';
  private plans = new Map<NodeId, BootPlan>();
  /** The NoCloud seed of each node's armed network boot, to the node. */
  private readonly seeds = new Map<string, NodeId>();
  /** Root filesystem requests per node since its kernel was fetched: the initramfs's attempts. */
  private readonly rootfsAttempts = new Map<NodeId, number>();
  private plansPath = '';
  private dhcp: DhcpServer | undefined;
  private tftp: TftpServer | undefined;
  private leases: LeaseStore | undefined;
  private db: Database.Database | undefined;
  private stopFollowingNodes: (() => void) | undefined;
  private stopFollowingOwnership: (() => void) | undefined;
  private discovered: DiscoveredStore | undefined;
  private metrics: PxeMetrics | undefined;
  private readonly scriptsPerMac: RateLimiter;
  private readonly scriptsPerSource: RateLimiter;

  constructor(
    private readonly options: PxeOptions,
    private readonly deps: PxeModuleDeps = {},
  ) {
    this.scriptsPerMac = new RateLimiter(options.scriptRateLimit.perMac);
    this.scriptsPerSource = new RateLimiter(options.scriptRateLimit.perSource);
    this.drivers = [{ facet: 'boot', claims: (node) => node.bmc.scheme !== 'sim', steps: { 'boot.arm': (r) => this.arm(r), 'boot.disk': (r) => this.bootFromDisk(r), 'boot.deploy': (r) => this.armDeploy(r) } }];
  }

  async start(host: ModuleHost): Promise<void> {
    this.host = host;
    const metrics = (this.metrics = new PxeMetrics(host.metrics));
    this.plansPath = join(host.dataDir, 'boot-plans.json');
    try {
      this.plans = new Map(Object.entries(JSON.parse(readFileSync(this.plansPath, 'utf8')) as Record<NodeId, BootPlan>));
      for (const [id, plan] of this.plans) if (plan.kind === 'network' && plan.seed) this.seeds.set(plan.seed, id);
    } catch {
      // first start
    }
    this.bootedPath = join(host.dataDir, 'booted-configs.json');
    try {
      this.booted = new Map(Object.entries(JSON.parse(readFileSync(this.bootedPath, 'utf8')) as Record<NodeId, string>));
    } catch {
      // first start
    }
    // A profile or node change may make a running configuration stale (or current again).
    this.stopFollowingNodes = host.onNodeChange((id) => this.observeConfig(id));
    // Nodes taken over from another appliance were armed there: this one has no plan to serve them.
    this.stopFollowingOwnership = host.services.get('ownership')?.onChange(() => this.rearmTakenOver());
    // The node's own word, at its agent's hello, after the kernel fetch this module saw.
    host.services.provide('configReports', { booted: (id, digest) => this.bootedWith(id, digest) });
    host.services.provide('armedBoots', { forKexec: (id) => this.kexecBoot(id), kexecStarted: (id) => this.kexecStarted(id) });
    for (const id of this.booted.keys()) this.observeConfig(id);
    this.db = new Database(join(host.dataDir, 'leases.db'));
    this.db.pragma('journal_mode = WAL');
    const discovered = (this.discovered = new DiscoveredStore(this.db));
    host.api.get('/discovered', (_req, res) => {
      // A machine enrolled since (POST /api/v1/nodes with its MAC) is no longer "discovered".
      const machines = discovered.list();
      for (const m of machines) if (host.byMac(m.mac)) discovered.remove(m.mac);
      res.json({ discovered: machines.filter((m) => !host.byMac(m.mac)) });
    });
    host.api.delete('/discovered/:mac', (req, res) => {
      const mac = macFromUrl(req.params.mac);
      if (!mac) throw new HttpProblem(400, 'Invalid MAC', `"${req.params.mac}" is not a MAC address like 52:54:00:12:34:56`);
      if (!discovered.remove(mac)) throw new HttpProblem(404, 'Not found', `${mac} is not a discovered machine; GET /api/v1/discovered lists them`);
      res.status(204).end();
    });
    host.http.get('/boot/:file', (req, res) => {
      const name = /^(.*)\.ipxe$/.exec(req.params.file)?.[1];
      const mac = name === undefined ? undefined : macFromUrl(name);
      if (!mac) {
        if (name !== undefined) metrics.bootFile('script', 'not-found');
        return void res.status(404).type('text/plain').send('not a boot script\n');
      }
      const source = req.socket.remoteAddress ?? 'unknown';
      const now = Date.now();
      const macWaitMs = this.scriptsPerMac.waitMs(mac, now);
      const sourceWaitMs = this.scriptsPerSource.waitMs(source, now);
      if (macWaitMs > 0 || sourceWaitMs > 0) {
        metrics.bootFile('script', 'rate-limited');
        const [limiter, key, limit] = macWaitMs > 0 ? [this.scriptsPerMac, mac, `for ${mac}`] : [this.scriptsPerSource, source, `from ${source}`];
        if (limiter.refused(key)) host.log.warn({ mac, source, limit: macWaitMs > 0 ? 'perMac' : 'perSource' }, 'iPXE script requests over their rate limit: refused until it refills');
        const retryAfterS = Math.ceil(Math.max(macWaitMs, sourceWaitMs) / 1000);
        return void res.status(429).set('retry-after', String(retryAfterS)).type('text/plain').send(`too many script requests ${limit}; retry in ${retryAfterS} s\n`);
      }
      this.scriptsPerMac.take(mac, now);
      this.scriptsPerSource.take(source, now);
      const elsewhere = this.servedElsewhere(mac, 'script');
      if (elsewhere) return refuseElsewhere(res, elsewhere);
      res.type('text/plain').send(this.script(mac));
    });
    host.http.get('/nocloud/:seed/:file', (req, res) => this.serveNoCloud(req.params.seed, req.params.file, req.socket.remoteAddress, res));
    host.http.get('/boot/:mac/:file', (req, res) => {
      const mac = macFromUrl(req.params.mac);
      const node = mac === undefined ? undefined : host.byMac(mac);
      const plan = node && this.plans.get(node.id);
      const image = plan?.kind === 'network' ? host.services.get('images')?.get(plan.image) : undefined;
      const route = BOOT_FILE_ROUTES.get(req.params.file);
      const file = route && image?.[route];
      const elsewhere = mac === undefined ? undefined : this.servedElsewhere(mac, route);
      if (elsewhere) return refuseElsewhere(res, elsewhere);
      // A file name that is neither is not counted: its label would be whatever a client sent.
      if (!node || !file) {
        if (route) metrics.bootFile(route, 'not-found');
        return void res.status(404).type('text/plain').send('no such boot file for this node\n');
      }
      metrics.bootFile(route!, 'redirected');
      if (route === 'kernel') this.kernelFetched(node);
      if (route === 'rootfs') this.rootfsFetched(node, req.query['error']);
      res.redirect(302, file.path);
    });
    if (this.options.dhcp) {
      this.leases = new SqliteLeaseStore(this.db);
      const server = new URL(this.options.advertiseUrl).host;
      this.dhcp = new DhcpServer(
        {
          mode: this.options.dhcp.mode,
          interface: this.options.dhcp.interface,
          subnets: this.options.dhcp.subnets as never,
          leaseSeconds: this.options.dhcp.leaseSeconds,
          boot: { ipxeScriptUrl: `http://${server}/boot/{mac}.ipxe`, ...(this.options.tftp ? { tftpServer: this.options.tftp.address } : {}) },
        },
        {
          addressBook: {
            reservationFor: (mac) => {
              const node = host.byMac(mac);
              return node?.ipv4 ? { ip: node.ipv4, hostname: node.name } : undefined;
            },
            isReserved: (ip) => host.nodes().some((n) => n.ipv4 === ip),
            // Several appliances on one cluster: a node's owner answers it (a machine nobody enrolled, every one).
            answers: (mac) => {
              const node = host.byMac(mac);
              const ownership = host.services.get('ownership');
              return !node || !ownership || ownership.owns(node.id);
            },
          },
          leases: this.leases,
          onEvent: (e) => {
            const node = host.byMac(e.mac);
            if (node && (e.type === 'discover' || e.type === 'request')) this.progress(node, 'dhcp');
            if (!node && e.type === 'ack' && e.ip) discovered.leased(e.mac, e.ip);
          },
          onUnknownClient: (mac, info) => discovered.seen(mac, info),
          // A network boot as it was armed; otherwise (a disk boot, none armed) the node's setting now,
          // so Secure Boot firmware gets a program it runs and is sent on to its disk from GRUB.
          uefiX64FileFor: (mac) => {
            const node = host.byMac(mac);
            const plan = node && this.plans.get(node.id);
            const secureBoot = plan?.kind === 'network' ? plan.secureBoot : node && host.services.get('nodeConfig')?.boot(node.id)?.secureBoot;
            return secureBoot ? SHIM_FILE : undefined;
          },
          ...(this.deps.dhcpTransport ? { transport: this.deps.dhcpTransport } : {}),
        },
      );
      metrics.watchDhcp(this.dhcp.counters);
      await this.dhcp.start();
    }
    if (this.options.tftp) {
      this.tftp = new TftpServer(
        {
          address: this.options.tftp.address,
          port: this.options.tftp.port,
          ...(this.options.tftp.transferThreads !== undefined ? { transferThreads: this.options.tftp.transferThreads } : {}),
        },
        {
          resolver: this.tftpResolver(),
          onLog: ({ level, event, message, client, path }) => {
            metrics.tftpLog(event);
            host.log[level]({ event, client, path }, `tftp: ${message}`);
          },
          onTransfer: (o) => {
            metrics.tftpTransfer(o);
            if (o.event !== 'start') return;
            // Its reservation, else its lease: a reserved node's address is its own even before a lease.
            const node = host.nodes().find((n) => n.ipv4 === o.client.address) ?? host.byMac(this.leases?.getByIp(o.client.address)?.mac ?? '');
            if (node) this.progress(node, 'loader');
          },
        },
      );
      await this.tftp.start();
    }
  }

  /**
   * iPXE's programs from ipxeDir, and the Secure Boot path: shim and GRUB, GRUB's entry config, each
   * node's GRUB config, and its kernel and initrd (fetching the kernel is boot=kernel, as over HTTP).
   */
  private tftpResolver(): TftpResolver {
    const ipxe = directoryResolver(this.options.ipxeDir);
    const { shim, grub } = this.options.secureBoot;
    return {
      resolve: async (request): Promise<TftpResolution> => {
        const confined = confinedSegments(request.path);
        if (!confined.ok) return { kind: 'denied', reason: confined.reason };
        const name = confined.segments.join('/');
        if (name === SHIM_FILE) return { kind: 'file', path: shim };
        if (name === SHIM_NEXT_STAGE) return { kind: 'file', path: grub };
        if (name === GRUB_PREFIX_CONFIG) return { kind: 'source', source: bufferSource(Buffer.from(GRUB_ENTRY_CONFIG)) };
        const config = GRUB_NODE_CONFIG.exec(name);
        const bootFile = GRUB_BOOT_FILE.exec(name);
        const mac = macFromUrl((config ?? bootFile)?.[1] ?? '');
        const elsewhere = mac === undefined ? undefined : this.servedElsewhere(mac, config ? 'script' : bootFile![2] === 'vmlinuz' ? 'kernel' : 'initrd');
        if (elsewhere) return { kind: 'denied', reason: elsewhere };
        if (config) return { kind: 'source', source: bufferSource(Buffer.from(this.grubConfig(config[1]!))) };
        if (bootFile) return this.grubBootFile(bootFile[1]!, bootFile[2] === 'vmlinuz' ? 'kernel' : 'initrd');
        return ipxe.resolve(request);
      },
    };
  }

  /** A node's GRUB config, the Secure Boot path's counterpart of its iPXE script. */
  private grubConfig(rawMac: string): string {
    const host = this.host!;
    const mac = macFromUrl(rawMac);
    const node = mac === undefined ? undefined : host.byMac(mac);
    const local = (reason: string) => {
      this.metrics?.bootFile('script', 'local');
      return localBootGrubConfig(reason);
    };
    if (!mac || !node) return local(`${rawMac} is not enrolled`);
    const plan = this.plans.get(node.id);
    if (plan?.kind !== 'network') return local(`${node.name} is set to boot from disk`);
    const image = host.services.get('images')?.get(plan.image);
    if (!image) return local(`image ${plan.image} is no longer in the store`);
    this.metrics?.bootFile('script', 'network');
    return networkBootGrubConfig({ advertiseUrl: this.options.advertiseUrl, mac, nodeId: node.id, plan, image });
  }

  private readonly grubFiles: Array<{ sha256: string; bytes: Promise<Buffer> }> = [];

  /**
   * A node's kernel or initrd for GRUB, which speaks only TFTP here: read from the image store over
   * its HTTP route (this module knows images by their served paths), checked against the manifest's
   * sha256, and kept in memory for GRUB's next ask.
   */
  private async grubBootFile(rawMac: string, route: 'kernel' | 'initrd'): Promise<TftpResolution> {
    const host = this.host!;
    const mac = macFromUrl(rawMac);
    const node = mac === undefined ? undefined : host.byMac(mac);
    const plan = node && this.plans.get(node.id);
    const file = plan?.kind === 'network' ? host.services.get('images')?.get(plan.image)?.[route] : undefined;
    if (!node || !file) {
      this.metrics?.bootFile(route, 'not-found');
      return { kind: 'not-found' };
    }
    let cached = this.grubFiles.find((f) => f.sha256 === file.sha256);
    if (!cached) {
      cached = { sha256: file.sha256, bytes: this.readImageFile(file) };
      this.grubFiles.unshift(cached);
      this.grubFiles.splice(GRUB_FILE_CACHE_ENTRIES);
      // A failed read is not kept.
      const entry = cached;
      entry.bytes.catch(() => {
        const at = this.grubFiles.indexOf(entry);
        if (at >= 0) this.grubFiles.splice(at, 1);
      });
    }
    const bytes = await cached.bytes;
    this.metrics?.bootFile(route, 'served');
    if (route === 'kernel') this.kernelFetched(node);
    return { kind: 'source', source: bufferSource(bytes) };
  }

  private async readImageFile(file: { path: string; sha256: string; size: number }): Promise<Buffer> {
    const url = new URL(file.path, this.options.advertiseUrl);
    const response = await fetch(url, { signal: AbortSignal.timeout(60_000) });
    if (!response.ok) throw new Error(`the image store answered ${response.status} for ${url.pathname}`);
    const bytes = Buffer.from(await response.arrayBuffer());
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (bytes.length !== file.size || sha256 !== file.sha256) throw new Error(`${url.pathname} is not the file its manifest names (sha256 ${sha256}, ${bytes.length} bytes)`);
    return bytes;
  }

  /** The node's kernel was fetched (over HTTP or TFTP): the boot is at its kernel, with its configuration. */
  private kernelFetched(node: NodeRecord): void {
    const plan = this.plans.get(node.id);
    this.progress(node, 'kernel');
    this.rootfsAttempts.delete(node.id);
    if (plan?.kind === 'network' && plan.digest) this.bootedWith(node.id, plan.digest);
  }

  /**
   * The armed boot of an image as the node's running OS loads it for kexec: the script's kernel,
   * initrd and command line, the kernel and initrd from the image store's own paths, so fetching them
   * is not mistaken for the firmware's boot reaching its kernel.
   */
  private kexecBoot(id: NodeId): KexecBoot | { problem: string } {
    const host = this.host!;
    const node = host.node(id);
    if (!node) return { problem: `node ${id} is not enrolled` };
    const plan = this.plans.get(id);
    if (plan?.kind !== 'network' || plan.deploy) return { problem: `${node.name} has no armed network boot of an image` };
    const boot = host.observed(id).boot?.value;
    if (boot !== 'armed') return { problem: `the armed boot of ${node.name} is ${boot ?? 'not observed'}, not armed: the firmware has it` };
    const image = host.services.get('images')?.get(plan.image);
    if (!image?.kernel || !image.initrd) return { problem: `image ${plan.image} has no kernel and initrd in the store` };
    const cmdline = kernelCommandLine({ advertiseUrl: this.options.advertiseUrl, mac: node.macs[0]!, nodeId: id, plan, image });
    return { image: plan.image, kernel: image.kernel, initrd: image.initrd, cmdline };
  }

  /** The running OS is kexec'ing into the armed boot: its own stage, with the configuration it was armed with. */
  private kexecStarted(id: NodeId): void {
    const plan = this.plans.get(id);
    if (plan?.kind !== 'network' || plan.deploy || this.host!.observed(id).boot?.value !== 'armed') return;
    this.host!.observe(id, 'boot', 'kexec', plan.image);
    this.rootfsAttempts.delete(id);
    if (plan.digest) this.bootedWith(id, plan.digest);
  }

  async stop(): Promise<void> {
    this.stopFollowingNodes?.();
    this.stopFollowingOwnership?.();
    await this.dhcp?.stop();
    await this.tftp?.close();
    this.db?.close();
  }

  private async bootFromDisk({ node }: StepRequest): Promise<void> {
    this.savePlan(node.id, { kind: 'disk' });
    this.host!.observe(node.id, 'boot', 'disk');
  }

  private async arm({ node, desired }: StepRequest): Promise<void> {
    const config = this.host!.services.get('nodeConfig')?.boot(node.id);
    // The desired image first: an operator's wish for this node outranks what its profiles say.
    const image = desired.image ?? config?.image;
    if (!image) throw new Error('no desired image to boot: set image=NAME@VERSION (or an image in a profile of the node)');
    await this.armNetworkBoot(node, image, 'image', config);
    this.host!.observe(node.id, 'boot', 'armed', image);
  }

  /** Arms a network boot of the deploy environment, whose agent then writes or erases the node's disk. */
  private async armDeploy({ node }: StepRequest): Promise<void> {
    const image = this.options.deployImage;
    await this.armNetworkBoot(node, image, 'deploy', this.host!.services.get('nodeConfig')?.boot(node.id));
    this.host!.observe(node.id, 'boot', 'deploy', `armed ${image}`);
  }

  /**
   * Saves a network boot plan with a fresh bootstrap. A deploy boot gets no NoCloud seed and no
   * configuration digest: it is not the node's configured OS, so it must not make config current.
   */
  private async armNetworkBoot(node: NodeRecord, image: string, purpose: 'image' | 'deploy', config: { kernelArgs: string[]; secureBoot?: boolean } | undefined): Promise<void> {
    const host = this.host!;
    const images = host.services.get('images');
    if (!images) throw new Error('no image store module is loaded (add "images" to the modules)');
    const imageInfo = images.get(image);
    if (!imageInfo) {
      throw new Error(purpose === 'deploy' ? `the deploy environment ${image} is not in the image store (build it: npx tsx images/build.ts ${image}, then shoal image add DIR)` : `image ${image} is not in the image store (shoal image add DIR)`);
    }
    if (!imageInfo.kernel) throw new Error(`${image} is a disk image only (no kernel to network-boot): install it with boot=disk image=${image}`);
    // Refused when it is asked for, not as a firmware refusal minutes later that says only "loader".
    if (config?.secureBoot && imageInfo.kernelSigned !== true) {
      throw new Error(`${node.name} boots with Secure Boot, but the kernel of ${image} is ${imageInfo.kernelSigned === false ? 'not signed' : 'of unknown signature (its manifest is from before Shoal recorded it: rebuild it, then remove and add it again)'}, and shim would refuse it: boot an image with a signed kernel (e.g. Debian's), or set secureBoot: false`);
    }
    const tokens = host.services.get('bootTokens');
    if (!tokens) throw new Error('no agent module is loaded to issue boot tokens (add "agent" to the modules)');
    const nocloud = purpose === 'image' ? host.services.get('nodeConfig')?.seed(node.id) : undefined;
    const plan: NetworkBootPlan = {
      kind: 'network',
      image,
      token: tokens.issue(node.id, image),
      kernelArgs: config?.kernelArgs ?? [],
      ...(purpose === 'deploy' ? { deploy: true as const } : { seed: randomBytes(24).toString('base64url') }),
      ...(nocloud ? { digest: nocloud.digest } : {}),
      ...(nocloud?.networkConfigArg ? { networkConfig: nocloud.networkConfigArg } : {}),
      ...(config?.secureBoot ? { secureBoot: true as const } : {}),
    };
    // Refused here rather than cut at boot. (The bootstrap just issued dies unused; the running boot keeps its token.)
    const cmdline = kernelCommandLine({ advertiseUrl: this.options.advertiseUrl, mac: node.macs[0]!, nodeId: node.id, plan, image: imageInfo });
    const grubProblem = plan.secureBoot && grubCommandLineProblem(cmdline);
    if (grubProblem) throw new Error(`the kernel command line of ${node.name}'s Secure Boot of ${image} cannot go through GRUB: ${grubProblem}; change the image's cmdline`);
    const bytes = Buffer.byteLength(cmdline);
    if (bytes > KERNEL_CMDLINE_MAX) {
      throw new Error(`the kernel command line of ${node.name}'s boot of ${image} would take ${bytes} bytes, over the ${KERNEL_CMDLINE_MAX} the kernel keeps: shorten the image's cmdline, the profiles' kernelArgs or network settings, or the advertise URL`);
    }
    this.savePlan(node.id, plan);
  }

  /**
   * cloud-init's NoCloud files for the node whose armed boot holds `seed`. A seed of an earlier boot
   * (re-armed since) or of no boot is 404; a request from an address the appliance knows to be
   * another node's (its reservation or its DHCP lease) is 403, so one node cannot read another's
   * data with a seed it read off the network.
   */
  private serveNoCloud(seed: string, file: string, source: string | undefined, res: Response): void {
    const host = this.host!;
    res.set('cache-control', 'no-store');
    const nodeId = this.seeds.get(seed);
    const node = nodeId === undefined ? undefined : host.node(nodeId);
    if (!node) return void res.status(404).type('text/plain').send('no such seed: it belongs to no armed boot\n');
    const address = source?.replace(/^::ffff:/, '');
    const claimant = address === undefined ? undefined : (host.nodes().find((n) => n.ipv4 === address) ?? host.byMac(this.leases?.getByIp(address)?.mac ?? ''));
    if (claimant && claimant.id !== node.id) {
      host.log.warn({ node: node.name, from: claimant.name, address }, 'NoCloud seed presented by another node: refused');
      return void res.status(403).type('text/plain').send('this seed is not for the node at your address\n');
    }
    let data: NoCloudSeed | undefined;
    try {
      data = host.services.get('nodeConfig')?.seed(node.id);
    } catch (err) {
      // Every save was checked to render; this is a bug or a store edited by hand, not the node's fault.
      host.log.error({ node: node.name, err }, 'rendering the NoCloud data failed');
      return void res.status(500).type('text/plain').send('the appliance could not render this node\'s configuration; see its log\n');
    }
    const body = data && { 'meta-data': data.metaData, 'user-data': data.userData, 'vendor-data': data.vendorData, 'network-config': data.networkConfig }[file];
    if (body === undefined) return void res.status(404).type('text/plain').send('NoCloud serves meta-data, user-data, vendor-data and network-config\n');
    res.type('text/plain').send(body);
  }

  /** The iPXE script for a MAC; fetching it is the loader stage of that node's boot. */
  private script(mac: string): string {
    const host = this.host!;
    const node = host.byMac(mac);
    if (!node) {
      // Seen here first where another DHCP server handed out the address (proxy or external DHCP).
      this.discovered?.seen(mac, { arch: undefined, isIpxe: true });
      return this.localBoot(`${mac} is not enrolled`);
    }
    const plan = this.plans.get(node.id);
    if (plan?.kind !== 'network') return this.localBoot(`${node.name} is set to boot from disk`);
    const image = host.services.get('images')?.get(plan.image);
    if (!image) return this.localBoot(`image ${plan.image} is no longer in the store`);
    this.progress(node, 'loader');
    this.metrics?.bootFile('script', 'network');
    return networkBootScript({ advertiseUrl: this.options.advertiseUrl, mac, nodeId: node.id, plan, image });
  }

  private localBoot(reason: string): string {
    this.metrics?.bootFile('script', 'local');
    return localBootScript(reason);
  }

  /** Whether this appliance acts on the node (the ownership service's word; one appliance alone owns every node). */
  private ownedHere(id: NodeId): boolean {
    return this.host!.services.get('ownership')?.owns(id) ?? true;
  }

  /**
   * Why an enrolled node's boot request is not this appliance's to answer (another owns it), or
   * undefined. Counted under its route (a file name that is none is not: its label would be whatever a client sent).
   */
  private servedElsewhere(mac: string, route: BootFileRoute | undefined): string | undefined {
    const node = this.host!.byMac(mac);
    if (!node || this.ownedHere(node.id)) return undefined;
    if (route) this.metrics?.bootFile(route, 'elsewhere');
    return `${node.name} is served by another appliance (this is ${this.host!.services.get('ownership')?.appliance ?? 'not its owner'}); its owner's DHCP names the right one`;
  }

  /**
   * Nodes this appliance has just taken over whose boot another armed (or had under way): without
   * the plan, this one's script would send them to their disk. Seen idle, the planner arms them here.
   */
  private rearmTakenOver(): void {
    const host = this.host!;
    for (const node of host.nodes()) {
      const boot = host.observed(node.id).boot?.value;
      if (this.plans.has(node.id) || !this.ownedHere(node.id) || !REARMED_ON_TAKEOVER.has(boot ?? '')) continue;
      host.observe(node.id, 'boot', 'idle', `armed (${boot}) by another appliance that no longer owns it; armed again here`);
    }
  }

  /** Boot progress only moves forward from an armed network boot; a disk boot is never turned into "dhcp". */
  private progress(node: NodeRecord, stage: (typeof NETWORK_BOOT_STAGES)[number]): void {
    // Another appliance's node: what it asks of this one is not its boot's progress.
    if (!this.ownedHere(node.id)) return;
    const plan = this.plans.get(node.id);
    if (plan?.kind === 'network' && plan.deploy) return this.deployProgress(node, stage, plan.image);
    const order: readonly string[] = NETWORK_BOOT_STAGES;
    const current = order.indexOf(this.host!.observed(node.id).boot?.value ?? '');
    // Only an armed boot under way (not yet at its kernel) moves on, and only forward.
    if (current < 0 || current === order.length - 1) return;
    if (order.indexOf(stage) > current) this.host!.observe(node.id, 'boot', stage);
  }

  /** A deploy boot's stages, forward only: boot=deploy with the stage in its detail, then deployed once its kernel is fetched. */
  private deployProgress(node: NodeRecord, stage: (typeof NETWORK_BOOT_STAGES)[number], image: string): void {
    const boot = this.host!.observed(node.id).boot;
    if (boot?.value !== 'deploy') return;
    if (stage === 'kernel') return this.host!.observe(node.id, 'boot', 'deployed', image);
    const order: readonly string[] = NETWORK_BOOT_STAGES;
    if (order.indexOf(stage) > order.indexOf(boot.detail?.split(' ', 1)[0] ?? '')) this.host!.observe(node.id, 'boot', 'deploy', `${stage} ${image}`);
  }

  /**
   * The initramfs asks for the root filesystem once per attempt, saying after a failed one what went
   * wrong (init.sh). A retry shows at once as the boot's detail, where the operator looks, instead
   * of only as a run.boot timeout minutes later. The reason is the node's word, unauthenticated:
   * only a short code is kept.
   */
  private rootfsFetched(node: NodeRecord, error: unknown): void {
    const attempt = (this.rootfsAttempts.get(node.id) ?? 0) + 1;
    this.rootfsAttempts.set(node.id, attempt);
    if (attempt === 1 || this.host!.observed(node.id).boot?.value !== 'kernel') return;
    const reason = typeof error === 'string' && /^[a-z0-9-]{1,40}$/.test(error) ? error : 'no reason given';
    this.host!.observe(node.id, 'boot', 'kernel', `root filesystem not there yet: attempt ${attempt}, the last one failed (${reason}); the initramfs keeps retrying`);
  }

  /** The node's kernel was fetched for a boot armed with this configuration: that is what it now runs. */
  private bootedWith(id: NodeId, digest: string): void {
    if (this.booted.get(id) === digest) return;
    this.booted.set(id, digest);
    writeFileSync(`${this.bootedPath}.tmp`, JSON.stringify(Object.fromEntries(this.booted)));
    renameSync(`${this.bootedPath}.tmp`, this.bootedPath);
    this.observeConfig(id);
  }

  /** config = current or stale: the digest the node booted with against its effective configuration's now. */
  private observeConfig(id: NodeId): void {
    const booted = this.booted.get(id);
    if (booted === undefined) return;
    const host = this.host!;
    if (!host.node(id)) {
      this.booted.delete(id);
      return;
    }
    let now: string | undefined;
    try {
      now = host.services.get('nodeConfig')?.seed(id)?.digest;
    } catch {
      return; // refused at every save; logged when the node asks for it
    }
    if (now !== undefined) host.observe(id, 'config', now === booted ? 'current' : 'stale', booted);
  }

  private savePlan(id: NodeId, plan: BootPlan): void {
    const previous = this.plans.get(id);
    if (previous?.kind === 'network' && previous.seed) this.seeds.delete(previous.seed);
    if (plan.kind === 'network' && plan.seed) this.seeds.set(plan.seed, id);
    this.plans.set(id, plan);
    writeFileSync(`${this.plansPath}.tmp`, JSON.stringify(Object.fromEntries(this.plans)));
    renameSync(`${this.plansPath}.tmp`, this.plansPath);
  }
}

export function createModule(options: Record<string, unknown>): PxeModule {
  return new PxeModule(PxeOptionsSchema.parse(options));
}
