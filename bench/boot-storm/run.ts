// The boot storm itself, for bench/boot-storm.ts and its test: two network namespaces joined by a
// veth (the server side, and the clients' side holding every client's reserved address), then for
// each round the appliance and then dnsmasq + nginx, each started afresh in the server namespace,
// each met by the same storm of clients (bench/boot-storm/clients.ts), each client's bytes checked.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Netns } from '../../test/support/netns.js';
import { writeFakeImage } from '../../test/support/fake-image.js';
import type { ApplianceSpec } from './appliance-server.js';
import { STAGES, type ClientResult, type ClientSpec, type Stage } from './clients.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SERVER_IF = 'bsts0';
const CLIENT_IF = 'bstc0';
const SERVER_IP = '10.98.0.1';
const CIDR = '10.98.0.0/16';
const APPLIANCE_PORT = 8080;
const NGINX_PORT = 80;
const IMAGE = { name: 'storm', version: '1' };
const KERNEL_BYTES = 8 << 20;
const INITRD_BYTES = 32 << 20;
/** What a BIOS PXE ROM is given; the real one when the ipxe package is installed. */
const IPXE_LOADER = '/usr/lib/ipxe/undionly.kpxe';
const START_MS = 120_000;

export interface StormOptions {
  clients: number;
  rootMb: number;
  rounds: number;
  /** Called with each run as it ends (the CLI prints it). */
  onRun?: (run: StormRun) => void;
  log?: (line: string) => void;
}

export type StackName = 'shoal' | 'dnsmasq+nginx';

export interface StormRun {
  round: number;
  stack: StackName;
  clients: ClientResult[];
  /** From the first client's start to the last client's end. */
  totalMs: number;
  failures: number;
  bytes: number;
  /** User + system CPU of every process in the server namespace during the storm. */
  serverCpuSeconds: number;
  clientCpuSeconds: number;
  /** Busy share of the whole machine during the storm (others' load included). */
  machineBusy: number;
}

export interface StormReport {
  files: { loader: number; kernel: number; initrd: number; root: number };
  runs: StormRun[];
}

interface Stack {
  name: StackName;
  start(): Promise<void>;
  scriptUrl: string;
  /** Files the stack serves from, read once before each storm so both start with a warm page cache. */
  warm(): string[];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function mac(i: number): string {
  return `52:54:00:5b:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
}

/** Reserved addresses 10.98.10.10 onwards, 200 per /24 (no .0 or .255 anywhere). */
function clientIp(i: number): string {
  return `10.98.${10 + Math.floor(i / 200)}.${10 + (i % 200)}`;
}

function machineCpu(): { busy: number; total: number } {
  const n = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - n[3]! - n[4]!, total };
}

/** Keeps the last 4 kB of a child's stderr, for the error when it dies. */
function tail(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-4000)));
  return () => text;
}

async function waitForLine(child: ChildProcess, what: string, match: (line: string) => boolean): Promise<void> {
  const stderr = tail(child);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} was not ready within ${START_MS / 1000} s: ${stderr()}`)), START_MS);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (match(line)) clearTimeout(timer), resolve();
    });
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`${what} exited with ${code}: ${stderr()}`))));
  });
}

/** Resolves once something in `ns` listens on each of the given `proto` ports, or rejects when `child` exits. */
async function waitForPorts(ns: Netns, child: ChildProcess, what: string, ports: { udp?: number[]; tcp?: number[] }): Promise<void> {
  const stderr = tail(child);
  const deadline = Date.now() + START_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}: ${stderr()}`);
    const udp = ns.run('ss', ['-H', '-uln']);
    const tcp = ns.run('ss', ['-H', '-tln']);
    if ((ports.udp ?? []).every((p) => new RegExp(`:${p}\\b`).test(udp)) && (ports.tcp ?? []).every((p) => new RegExp(`:${p}\\b`).test(tcp))) return;
    await sleep(100);
  }
  throw new Error(`${what} did not listen within ${START_MS / 1000} s: ${stderr()}`);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function runBootStorm(options: StormOptions): Promise<StormReport> {
  const log = options.log ?? (() => {});
  const work = mkdtempSync(join(tmpdir(), 'shoal-boot-storm-'));
  // dnsmasq's TFTP and nginx's workers run as nobody: the served tree must be readable to them.
  chmodSync(work, 0o755);
  const serverNs = Netns.create('bstorm-s');
  const clientNs = Netns.create('bstorm-c');
  const cleanup = () => {
    clientNs.destroy();
    serverNs.destroy();
    rmSync(work, { recursive: true, force: true });
  };
  // Ctrl-C mid-storm still ends the servers and clients and removes the generated files.
  const interrupted = () => (cleanup(), process.exit(130));
  process.once('SIGINT', interrupted);
  try {
    serverNs.link(clientNs, { ifname: SERVER_IF, cidr: `${SERVER_IP}/16` }, { ifname: CLIENT_IF, cidr: '10.98.0.2/16' });
    // The clients' DHCP broadcasts need a route for 255.255.255.255; their TCP and TFTP run from their reserved addresses.
    clientNs.run('ip', ['route', 'add', 'default', 'dev', CLIENT_IF]);
    const nodes = Array.from({ length: options.clients }, (_, i) => ({ name: `storm${String(i + 1).padStart(4, '0')}`, mac: mac(i), ip: clientIp(i) }));
    clientNs.run('ip', ['-batch', '-'], nodes.map((n) => `addr add ${n.ip}/16 dev ${CLIENT_IF}\n`).join(''));

    // The same generated files for both stacks: the appliance imports them, nginx serves them.
    log(`generating the files: kernel ${KERNEL_BYTES >> 20} MiB, initrd ${INITRD_BYTES >> 20} MiB, root ${options.rootMb} MiB (random bytes)`);
    const www = join(work, 'www');
    const imageDir = join(www, 'images', IMAGE.name, IMAGE.version);
    const image = writeFakeImage(imageDir, { ...IMAGE, kernel: randomBytes(KERNEL_BYTES), initrd: randomBytes(INITRD_BYTES), rootfs: randomBytes(options.rootMb << 20) });
    const tftpRoot = join(work, 'tftp');
    mkdirSync(tftpRoot, { mode: 0o755 });
    if (existsSync(IPXE_LOADER)) copyFileSync(IPXE_LOADER, join(tftpRoot, 'undionly.kpxe'));
    else writeFileSync(join(tftpRoot, 'undionly.kpxe'), randomBytes(70_000));
    for (const dir of [www, join(www, 'images'), join(www, 'images', IMAGE.name), imageDir]) chmodSync(dir, 0o755);
    const files = {
      loader: join(tftpRoot, 'undionly.kpxe'),
      kernel: join(imageDir, image.manifest.kernel!.file),
      initrd: join(imageDir, image.manifest.initrd!.file),
      root: join(imageDir, image.manifest.rootfs!.file),
    };

    // nginx's side of the script: the appliance's script for the same image, with static URLs.
    mkdirSync(join(www, 'boot'), { mode: 0o755 });
    const base = `http://${SERVER_IP}:${NGINX_PORT}/images/${IMAGE.name}/${IMAGE.version}`;
    for (const n of nodes) {
      writeFileSync(
        join(www, 'boot', `${n.mac}.ipxe`),
        [
          '#!ipxe',
          `echo booting ${IMAGE.name}@${IMAGE.version}`,
          `kernel ${base}/vmlinuz initrd=initrd.img ${image.manifest.cmdline} shoal.rootfs=${base}/root.squashfs shoal.rootfs_sha256=${image.manifest.rootfs!.sha256}`,
          `initrd --name initrd.img ${base}/initrd.img`,
          'boot',
          '',
        ].join('\n'),
      );
    }

    const applianceData = join(work, 'appliance-data');
    const applianceSpec: ApplianceSpec = {
      dataDir: applianceData,
      imageDir,
      image: `${IMAGE.name}@${IMAGE.version}`,
      ipxeDir: tftpRoot,
      interface: SERVER_IF,
      address: SERVER_IP,
      cidr: CIDR,
      httpPort: APPLIANCE_PORT,
      nodes,
    };
    writeFileSync(join(work, 'appliance.json'), JSON.stringify(applianceSpec));
    const shoal: Stack = {
      name: 'shoal',
      scriptUrl: `http://${SERVER_IP}:${APPLIANCE_PORT}/boot/{mac}.ipxe`,
      async start() {
        const child = serverNs.spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/boot-storm/appliance-server.ts'), join(work, 'appliance.json')], { cwd: ROOT });
        await waitForLine(child, 'the appliance', (line) => line.includes('"ready":true'));
        child.stdout!.resume();
      },
      warm: () => readdirSync(join(applianceData, 'modules/images/blobs/sha256')).map((f) => join(applianceData, 'modules/images/blobs/sha256', f)),
    };

    writeFileSync(join(work, 'dnsmasq-hosts'), nodes.map((n) => `${n.mac},${n.ip}\n`).join(''));
    writeFileSync(
      join(work, 'dnsmasq.conf'),
      [
        'port=0', // no DNS: DHCP and TFTP only
        `interface=${SERVER_IF}`,
        'bind-interfaces',
        `dhcp-range=${CIDR.split('/')[0]},static,255.255.0.0,1h`,
        `dhcp-hostsfile=${join(work, 'dnsmasq-hosts')}`,
        'dhcp-authoritative',
        'dhcp-boot=undionly.kpxe',
        `dhcp-leasefile=${join(work, 'dnsmasq.leases')}`,
        'dhcp-lease-max=10000',
        'no-ping', // the reserved addresses are already up in the client namespace
        'enable-tftp',
        `tftp-root=${tftpRoot}`,
        'tftp-max=10000', // the default 50 would refuse most of a storm
        `pid-file=${join(work, 'dnsmasq.pid')}`,
        `log-facility=${join(work, 'dnsmasq.log')}`,
        'quiet-dhcp',
        'quiet-tftp',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(work, 'nginx.conf'),
      `daemon off;
worker_processes auto;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${work}/nginx-body;
  proxy_temp_path ${work}/nginx-proxy;
  fastcgi_temp_path ${work}/nginx-fastcgi;
  uwsgi_temp_path ${work}/nginx-uwsgi;
  scgi_temp_path ${work}/nginx-scgi;
  server {
    listen ${SERVER_IP}:${NGINX_PORT};
    root ${www};
  }
}
`,
    );
    const peer: Stack = {
      name: 'dnsmasq+nginx',
      scriptUrl: `http://${SERVER_IP}:${NGINX_PORT}/boot/{mac}.ipxe`,
      async start() {
        rmSync(join(work, 'dnsmasq.leases'), { force: true });
        const dnsmasq = serverNs.spawn('dnsmasq', ['--keep-in-foreground', `--conf-file=${join(work, 'dnsmasq.conf')}`], { stdio: ['ignore', 'ignore', 'pipe'] });
        await waitForPorts(serverNs, dnsmasq, 'dnsmasq', { udp: [67, 69] });
        const nginx = serverNs.spawn('nginx', ['-p', work, '-c', join(work, 'nginx.conf'), '-e', join(work, 'nginx-error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
        await waitForPorts(serverNs, nginx, 'nginx', { tcp: [NGINX_PORT] });
      },
      warm: () => [files.kernel, files.initrd, files.root],
    };

    const spec: ClientSpec = { clients: nodes.map(({ mac: m, ip }) => ({ mac: m, ip })), spreadMs: 1000, scriptUrl: '', files };
    const runs: StormRun[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      for (const stack of [shoal, peer]) {
        log(`round ${round} ${stack.name}: starting`);
        await stack.start();
        try {
          for (const file of stack.warm()) readFileSync(file);
          writeFileSync(join(work, 'clients.json'), JSON.stringify({ ...spec, scriptUrl: stack.scriptUrl }));
          const cpu0 = serverNs.cpuSeconds();
          const m0 = machineCpu();
          const clients = clientNs.spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/boot-storm/clients.ts'), join(work, 'clients.json')], { cwd: ROOT });
          const stderr = tail(clients);
          let out = '';
          clients.stdout!.on('data', (d: Buffer) => (out += d.toString()));
          const code = await new Promise<number | null>((resolve) => clients.once('close', resolve));
          const cpu1 = serverNs.cpuSeconds();
          const m1 = machineCpu();
          if (code !== 0) throw new Error(`the clients exited with ${code}: ${stderr()}`);
          const { results, cpuSeconds } = JSON.parse(out) as { results: ClientResult[]; cpuSeconds: number };
          const run: StormRun = {
            round,
            stack: stack.name,
            clients: results,
            totalMs: Math.max(...results.map((r) => r.endMs)),
            failures: results.filter((r) => r.failure).length,
            bytes: results.reduce((a, r) => a + r.verifiedBytes, 0),
            serverCpuSeconds: cpu1 - cpu0,
            clientCpuSeconds: cpuSeconds,
            machineBusy: (m1.busy - m0.busy) / (m1.total - m0.total),
          };
          runs.push(run);
          options.onRun?.(run);
        } finally {
          await serverNs.stopAll(5000);
        }
      }
    }
    const size = (path: string) => readFileSync(path).length;
    return { files: { loader: size(files.loader), kernel: KERNEL_BYTES, initrd: INITRD_BYTES, root: options.rootMb << 20 }, runs };
  } finally {
    process.off('SIGINT', interrupted);
    cleanup();
  }
}

export function stageTimes(run: StormRun, stage: Stage): number[] {
  return run.clients.flatMap((c) => (c.stages[stage] === undefined ? [] : [c.stages[stage]!]));
}

export { STAGES };
