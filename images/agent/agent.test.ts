// Runs the real shoal-agent.sh under busybox sh on this host against a small HTTP server on
// 127.0.0.1 that speaks PROTOCOL.md. The kernel command line, boot id and /etc/shoal-image
// are files in a temp dir; SHOAL_POWER_CMD is always set so a reboot action cannot reach
// the host (the tests run as root).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, symlinkSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HardwareSchema } from '../../src/contracts/hardware.js';
import { requirements, skipUnless } from '../../test/support/environment.js';

const AGENT = new URL('./shoal-agent.sh', import.meta.url).pathname;
const BOOT_ID = '3f1c2a9e-5b7d-4c1e-9a2b-0d8e7f6a5b4c';

interface AgentRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}
/** A reply: a status and text body, or (send) a handler that writes the response itself, e.g. a disk image served slowly or cut. */
type Reply = { status: number; body?: string; send?: (res: ServerResponse) => void };
/** Decides the reply to a request, given every request seen so far (this one last). */
type Responder = (request: AgentRequest, seen: AgentRequest[]) => Reply;

class FakeAppliance {
  readonly requests: AgentRequest[] = [];
  /** Awaited before each reply: lets a test look at the agent while its request is in flight. */
  beforeReply: (request: AgentRequest) => Promise<void> = async () => {};
  private constructor(
    private readonly server: Server,
    public responder: Responder,
  ) {}

  static async start(responder: Responder): Promise<FakeAppliance> {
    let appliance: FakeAppliance | undefined;
    const server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
      req.on('end', () => {
        // The agent's reports are JSON; its read of the node's configuration is a GET.
        const request: AgentRequest = { path: req.url ?? '', headers: req.headers, body: raw ? (JSON.parse(raw) as Record<string, unknown>) : {} };
        appliance!.requests.push(request);
        const reply = appliance!.responder(request, appliance!.requests);
        void appliance!.beforeReply(request).then(() => {
          if (reply.send) return reply.send(res);
          res.writeHead(reply.status, { 'content-type': 'text/plain' });
          res.end(reply.body ?? '');
        });
      });
    });
    appliance = new FakeAppliance(server, responder);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return appliance;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  count(path: string): number {
    return this.requests.filter((r) => r.path === path).length;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const ok = (lines: string): Reply => ({ status: 200, body: lines });

class RunningAgent {
  stderr = '';
  exitCode: number | null = null;
  constructor(readonly child: ChildProcess) {
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')));
    child.on('exit', (code) => (this.exitCode = code));
  }

  /** PIDs of the agent's children running the placeholder workload. */
  workloadPids(): number[] {
    const pid = this.child.pid!;
    const childrenFile = `/proc/${pid}/task/${pid}/children`;
    if (!existsSync(childrenFile)) return [];
    return readFileSync(childrenFile, 'utf8')
      .split(' ')
      .filter(Boolean)
      .map(Number)
      .filter((child) => {
        try {
          return readFileSync(`/proc/${child}/cmdline`, 'utf8').startsWith('sleep\0' + '2147483647');
        } catch {
          return false; // exited while we looked
        }
      });
  }

  /** The arguments and environment of every process in the agent's process group (the shell, its workload, a wget in flight). */
  processGroupText(): string {
    const pgid = this.child.pid!;
    let text = '';
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        // Field 5 of stat is the process group; the command name (field 2) may hold spaces, so split after its ')'.
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) !== pgid) continue;
        text += `${readFileSync(`/proc/${entry}/cmdline`, 'utf8')}\n${readFileSync(`/proc/${entry}/environ`, 'utf8')}\n`;
      } catch {
        // exited while we looked
      }
    }
    return text;
  }

  /** Kills the agent's whole process group: the shell, its workload and any wget in flight. */
  kill(): void {
    if (this.exitCode !== null) return;
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const skip = skipUnless('shoal-agent', requirements({ commands: ['busybox'] }));

describe.skipIf(skip)('shoal-agent.sh against a fake appliance', () => {
  let dir: string;
  let appliance: FakeAppliance | undefined;
  let agent: RunningAgent | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-agent-test-'));
    writeFileSync(join(dir, 'boot_id'), `${BOOT_ID}\n`);
    writeFileSync(join(dir, 'shoal-image'), 'image=compute@1\nname=compute\nversion=1\n');
    // Records power actions instead of performing them.
    writeFileSync(join(dir, 'power'), `#!/bin/sh\necho "$1" >> ${join(dir, 'power.log')}\nexit 1\n`);
    chmodSync(join(dir, 'power'), 0o755);
  });

  afterEach(async () => {
    agent?.kill();
    agent = undefined;
    await appliance?.close();
    appliance = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  function startAgent(cmdline: string, env: Record<string, string> = {}): RunningAgent {
    writeFileSync(join(dir, 'cmdline'), `${cmdline}\n`);
    const child = spawn('busybox', ['sh', AGENT], {
      env: {
        PATH: process.env.PATH,
        SHOAL_CMDLINE: join(dir, 'cmdline'),
        SHOAL_BOOT_ID: join(dir, 'boot_id'),
        SHOAL_IMAGE_FILE: join(dir, 'shoal-image'),
        SHOAL_WORK_DIR: join(dir, 'work'),
        SHOAL_POWER_CMD: join(dir, 'power'),
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true, // its own process group, so kill() reaches the workload too
    });
    agent = new RunningAgent(child);
    return agent;
  }

  const cmdlineFor = (url: string) => `BOOT_IMAGE=vmlinuz console=ttyS0 shoal.url=${url}/ shoal.node=n01 shoal.token=tok-123 shoal.image=compute@1 quiet`;

  /** Writes FILES (path → content) under the temp dir: a made-up machine's sysfs and /proc. */
  function fakeTree(files: Record<string, string>): void {
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
  }

  it('keeps the next boot\'s bootstrap from a reply in the GRUB environment block of its disk, once, the other words as they were', async () => {
    const envFile = join(dir, 'grubenv');
    const block = (args: string) => {
      const text = `# GRUB Environment Block\nshoal_args=${args}\n`;
      return text + '#'.repeat(1024 - text.length);
    };
    const words = (token: string) => `shoal.url=http://10.0.0.1:8080 shoal.node=n01 shoal.token=${token} shoal.image=debian@12`;
    writeFileSync(envFile, block(words('tok-123')));
    appliance = await FakeAppliance.start((request) => ok(request.path === '/agent/v1/hello' ? 'interval=1\naction=none\ntoken=boot-tok\n' : 'interval=1\naction=none\nnext=next-tok_42\n'));
    startAgent(cmdlineFor(appliance.url), { SHOAL_BOOT_ENV_FILE: envFile });
    await waitFor('the block rewritten', () => readFileSync(envFile, 'latin1').includes('next-tok_42'));
    expect(readFileSync(envFile, 'latin1')).toBe(block(words('next-tok_42')));
    await waitFor('three more heartbeats', () => appliance!.count('/agent/v1/heartbeat') >= 4);
    expect(agent!.stderr.match(/the next boot from disk has its bootstrap/g)).toHaveLength(1);
    expect(readdirSync(dir).filter((f) => f.startsWith('grubenv'))).toEqual(['grubenv']);
  });

  it('says why it cannot keep the next bootstrap when its disk has no block with a token', async () => {
    appliance = await FakeAppliance.start(() => ok('interval=1\naction=none\nnext=next-tok\n'));
    startAgent(cmdlineFor(appliance.url), { SHOAL_BOOT_ENV_FILE: join(dir, 'no-such-grubenv') });
    await waitFor('the reason logged', () => agent!.stderr.includes('has no shoal.token to replace; the next boot from disk cannot say hello'));
    expect(existsSync(join(dir, 'no-such-grubenv'))).toBe(false);
  });

  it('reports the hardware in its hello: system, CPU sockets and threads, memory, and only the disks an install could use', async () => {
    // Two sockets of one core with two threads each.
    const cpu = (n: number, socket: number) => `processor\t: ${n}\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nphysical id\t: ${socket}\ncore id\t\t: 0\n\n`;
    fakeTree({
      'sys/class/dmi/id/sys_vendor': 'Dell Inc.\n',
      // Quotes and a backslash would break the JSON; the agent keeps only its safe alphabet.
      'sys/class/dmi/id/product_name': 'PowerEdge "R650" \\ \n',
      'sys/class/dmi/id/product_serial': 'ABC1234\n',
      'sys/class/dmi/id/product_uuid': '4c4c4544-0042-3510-8051-b4c04f353132\n',
      'proc/cpuinfo': cpu(0, 0) + cpu(1, 0) + cpu(2, 1) + cpu(3, 1),
      'proc/meminfo': 'MemTotal:       263921868 kB\nMemFree:        1000 kB\n',
      'sys/block/sda/device/model': 'PERC H755       \n',
      'sys/block/sda/device/wwid': 'naa.6f4ee080515dc10029a1c4b8d9f1e2a3\n',
      'sys/block/sda/size': '3749707776\n',
      'sys/block/sda/queue/rotational': '1\n',
      'sys/block/sda/removable': '0\n',
      'sys/block/vda/device/.keep': '', // virtio-blk: no model, its serial beside the queue
      'sys/block/vda/serial': 'shoal-disk-1\n',
      'sys/block/vda/size': '16777216\n',
      'sys/block/vda/queue/rotational': '0\n',
      'sys/block/vda/removable': '0\n',
      'sys/block/loop0/size': '2048\n', // no device link: not hardware
      'sys/block/sr0/device/model': 'QEMU DVD-ROM\n', // optical: never an install target
      'sys/block/sr0/size': '0\n',
      'sys/firmware/efi/.keep': '',
      'sys/class/net/eno1/device/.keep': '',
      'sys/class/net/eno1/address': '3c:ec:ef:01:02:03\n',
      'sys/class/net/eno1/speed': '25000\n',
      'sys/class/net/eno2/device/.keep': '',
      'sys/class/net/eno2/address': '3c:ec:ef:01:02:04\n',
      'sys/class/net/eno2/speed': '-1\n', // link down
      'sys/class/net/br0/address': '3c:ec:ef:01:02:03\n', // a bridge: no device link
    });
    symlinkSync('../../../../bus/pci/drivers/ice', join(dir, 'sys/class/net/eno1/device/driver'));
    appliance = await FakeAppliance.start(() => ok('interval=60\naction=none\n'));
    startAgent(cmdlineFor(appliance.url), { SHOAL_SYS_DIR: join(dir, 'sys'), SHOAL_PROC_DIR: join(dir, 'proc') });
    await waitFor('a hello', () => appliance!.count('/agent/v1/hello') >= 1);
    expect(appliance.requests[0]!.body.hardware).toEqual({
      firmware: 'uefi',
      system: { vendor: 'Dell Inc.', product: 'PowerEdge R650', serial: 'ABC1234', uuid: '4c4c4544-0042-3510-8051-b4c04f353132' },
      cpu: { model: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz', sockets: 2, cores: 2, threads: 4 },
      memoryBytes: 263921868 * 1024,
      disks: [
        { name: 'sda', sizeBytes: 3749707776 * 512, model: 'PERC H755', serial: '', wwn: 'naa.6f4ee080515dc10029a1c4b8d9f1e2a3', rotational: true, removable: false },
        { name: 'vda', sizeBytes: 16777216 * 512, model: '', serial: 'shoal-disk-1', wwn: '', rotational: false, removable: false },
      ],
      nics: [
        { name: 'eno1', mac: '3c:ec:ef:01:02:03', speedMbps: 25000, driver: 'ice' },
        { name: 'eno2', mac: '3c:ec:ef:01:02:04', speedMbps: 0, driver: '' },
      ],
    });
    // What the appliance's own schema makes of it: accepted as it is.
    expect(HardwareSchema.parse(appliance.requests[0]!.body.hardware)).toEqual(appliance.requests[0]!.body.hardware);
  });

  it('says hello with its identity, then heartbeats at the interval the reply sets', async () => {
    appliance = await FakeAppliance.start(() => ok('interval=1\naction=none\n'));
    startAgent(cmdlineFor(appliance.url));
    await waitFor('3 heartbeats', () => appliance!.count('/agent/v1/heartbeat') >= 3);

    const [hello, ...rest] = appliance.requests;
    expect(hello!.path).toBe('/agent/v1/hello');
    expect(hello!.body.token).toBe('tok-123');
    expect(hello!.headers['content-type']).toBe('application/json');
    expect(hello!.body).toMatchObject({ node: 'n01', bootId: BOOT_ID, image: 'compute@1', bakedImage: 'compute@1', kernel: release() });
    expect(typeof hello!.body.uptime).toBe('number');
    const interfaces = hello!.body.interfaces as { name: string; mac: string; ipv4: string[] }[];
    expect(Array.isArray(interfaces)).toBe(true);
    for (const iface of interfaces) {
      expect(iface.name).not.toBe('lo');
      expect(Array.isArray(iface.ipv4)).toBe(true);
    }
    expect(rest.map((r) => r.path)).toEqual(rest.map(() => '/agent/v1/heartbeat'));
    for (const beat of rest) {
      // This appliance hands out no boot token, so the agent has only the bootstrap to send.
      expect(beat.body.token).toBe('tok-123');
      expect(beat.body).toMatchObject({ node: 'n01', bootId: BOOT_ID, state: 'running' });
      expect(typeof beat.body.uptime).toBe('number');
    }
  });

  it('trades the bootstrap for the boot token in the hello reply: kept in a root-only file, sent at once and in every report, never in an argument or the environment', async () => {
    appliance = await FakeAppliance.start((request) => ok(request.path === '/agent/v1/hello' ? 'interval=30\naction=none\ntoken=boot-tok.456\n' : 'interval=30\naction=none\n'));
    // What any user on the node could read in /proc while each request is in flight.
    const inFlight: string[] = [];
    appliance.beforeReply = async () => void inFlight.push(agent!.processGroupText());
    const running = startAgent(cmdlineFor(appliance.url));
    // The interval is 30 s: a heartbeat this soon is the one that confirms the new token.
    await waitFor('the first heartbeat', () => appliance!.count('/agent/v1/heartbeat') >= 1, 10_000);
    expect(appliance.requests.map((r) => [r.path, r.body.token])).toEqual([
      ['/agent/v1/hello', 'tok-123'],
      ['/agent/v1/heartbeat', 'boot-tok.456'],
    ]);
    const tokenFile = join(dir, 'work', 'token');
    expect(readFileSync(tokenFile, 'utf8')).toBe('boot-tok.456\n');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'work')).mode & 0o777).toBe(0o700);
    expect(inFlight).toHaveLength(2);
    for (const seen of inFlight) {
      expect(seen).toContain('--post-file'); // the wget was caught in flight
      expect(seen).not.toContain('boot-tok.456');
    }

    // Restarted (as /init does when it exits), the agent picks the boot token up from its file.
    running.kill();
    await waitFor('the agent to be gone', () => running.exitCode !== null || running.child.signalCode !== null);
    const before = appliance.requests.length;
    startAgent(cmdlineFor(appliance.url));
    await waitFor('a hello from the restarted agent', () => appliance!.requests.length > before);
    expect(appliance.requests[before]).toMatchObject({ path: '/agent/v1/hello', body: { token: 'boot-tok.456', bootId: BOOT_ID } });
  });

  it('backs off on 401 and keeps trying until the appliance accepts it', async () => {
    appliance = await FakeAppliance.start((request, seen) =>
      request.path === '/agent/v1/hello' && seen.length <= 2 ? { status: 401 } : ok('interval=1\naction=none\n'),
    );
    startAgent(cmdlineFor(appliance.url));
    await waitFor('a heartbeat after two rejected hellos', () => appliance!.count('/agent/v1/heartbeat') >= 1);
    expect(appliance.requests.slice(0, 3).map((r) => r.path)).toEqual(['/agent/v1/hello', '/agent/v1/hello', '/agent/v1/hello']);
    expect(agent!.stderr).toContain('HTTP 401');
    expect(agent!.exitCode).toBeNull();
  });

  it('says hello again when the appliance answers a heartbeat with 409', async () => {
    appliance = await FakeAppliance.start((request) =>
      request.path === '/agent/v1/heartbeat' && appliance!.count('/agent/v1/hello') === 1 ? { status: 409 } : ok('interval=1\n'),
    );
    startAgent(cmdlineFor(appliance.url));
    await waitFor('a second hello and a heartbeat after it', () => appliance!.count('/agent/v1/hello') >= 2 && appliance!.requests.at(-1)!.path === '/agent/v1/heartbeat');
    expect(appliance.requests.slice(0, 3).map((r) => r.path)).toEqual(['/agent/v1/hello', '/agent/v1/heartbeat', '/agent/v1/hello']);
  });

  it('drains: stops the workload, reports drained, then heartbeats as drained', async () => {
    appliance = await FakeAppliance.start((request) => ok(request.path === '/agent/v1/heartbeat' ? 'interval=1\naction=drain\n' : 'interval=1\naction=none\n'));
    const running = startAgent(cmdlineFor(appliance.url));
    await waitFor('the workload to start', () => running.workloadPids().length === 1);
    await waitFor('a drained report and a heartbeat after it', () => {
      const drainedAt = appliance!.requests.findIndex((r) => r.path === '/agent/v1/drained');
      return drainedAt >= 0 && appliance!.requests.slice(drainedAt).some((r) => r.path === '/agent/v1/heartbeat');
    });
    const drained = appliance.requests.find((r) => r.path === '/agent/v1/drained')!;
    expect(drained.body.token).toBe('tok-123');
    expect(drained.body).toMatchObject({ node: 'n01', bootId: BOOT_ID, state: 'drained' });
    expect(appliance.requests.filter((r) => r.path === '/agent/v1/drained')).toHaveLength(1);
    expect(appliance.requests.at(-1)!.body.state).toBe('drained');
    expect(running.workloadPids()).toEqual([]);
  });

  it('carries out a reboot action through the power command and keeps heartbeating when it returns', async () => {
    appliance = await FakeAppliance.start((request) => ok(request.path === '/agent/v1/hello' ? 'interval=1\naction=reboot\n' : 'interval=1\n'));
    startAgent(cmdlineFor(appliance.url));
    await waitFor('a heartbeat after the reboot action', () => appliance!.count('/agent/v1/heartbeat') >= 1);
    expect(readFileSync(join(dir, 'power.log'), 'utf8')).toBe('reboot\n');
    expect(agent!.stderr).toContain('reboot did not happen');
  });

  it('under systemd: reports is-system-running, drains by stopping the workload unit, reboots through systemctl', async () => {
    // A systemctl that records its arguments and says the system is degraded; reboot and poweroff
    // stand-ins too, so no path of the script can reach the host's own.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    mkdirSync(join(dir, 'run-systemd-system'));
    const record = (name: string, out = '') => {
      writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> ${join(dir, 'calls.log')}\n${out}`);
      chmodSync(join(bin, name), 0o755);
    };
    record('systemctl', '[ "$1" = is-system-running ] && echo degraded\nexit 0\n');
    record('reboot', 'exit 1\n');
    record('poweroff', 'exit 1\n');
    let beats = 0;
    appliance = await FakeAppliance.start((request) => {
      if (request.path !== '/agent/v1/heartbeat') return ok('interval=1\naction=none\n');
      beats++;
      return ok(`interval=1\naction=${beats === 1 ? 'drain' : request.body.state === 'drained' ? 'reboot' : 'none'}\n`);
    });
    const running = startAgent(cmdlineFor(appliance.url), {
      PATH: `${bin}:${process.env.PATH}`,
      SHOAL_POWER_CMD: '',
      SHOAL_SYSTEMD_DIR: join(dir, 'run-systemd-system'),
      SHOAL_WORKLOAD_UNIT: 'shoal-workload.target',
    });
    await waitFor('systemctl reboot', () => existsSync(join(dir, 'calls.log')) && readFileSync(join(dir, 'calls.log'), 'utf8').includes('systemctl reboot'));
    const calls = readFileSync(join(dir, 'calls.log'), 'utf8').split('\n').filter((l) => l && l !== 'systemctl is-system-running');
    expect(calls).toEqual(['systemctl stop shoal-workload.target', 'systemctl reboot']);
    // No placeholder process: the workload is the unit.
    expect(running.workloadPids()).toEqual([]);
    expect(appliance.requests[0]!.body.system).toBe('degraded');
    expect(appliance.requests.filter((r) => r.path !== '/agent/v1/hello').every((r) => r.body.system === 'degraded')).toBe(true);
    expect(running.stderr).toContain('draining: stopping the workload (shoal-workload.target)');
    expect(running.stderr).toContain('systemd is taking the node down (reboot)');
  });

  it('reads its NoCloud meta-data: reports the configuration digest in the hello and, without cloud-init, applies the hostname and keys', async () => {
    const digest = 'ab'.repeat(32);
    const keys = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@site', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBackup backup: "quoted"'];
    const metaData = `instance-id: shoal-n01-${digest}\nlocal-hostname: c01.lab\npublic-keys:\n  - ${keys[0]}\n  - '${keys[1]}'\n`;
    appliance = await FakeAppliance.start((request) => (request.path === '/nocloud/s3cr3t/meta-data' ? ok(metaData) : ok('interval=1\naction=none\n')));
    writeFileSync(join(dir, 'hostname-cmd'), `#!/bin/sh\necho "$1" > ${join(dir, 'hostname-set')}\n`);
    chmodSync(join(dir, 'hostname-cmd'), 0o755);
    mkdirSync(join(dir, 'etc'));
    const withSeed = `${cmdlineFor(appliance.url)} ds=nocloud-net;s=${appliance.url}/nocloud/s3cr3t/`;
    startAgent(withSeed, { SHOAL_ETC_DIR: join(dir, 'etc'), SHOAL_ROOT_HOME: join(dir, 'root'), SHOAL_HOSTNAME_CMD: join(dir, 'hostname-cmd'), SHOAL_CLOUD_INIT_CMD: 'no-such-cloud-init' });
    await waitFor('a heartbeat', () => appliance!.count('/agent/v1/heartbeat') >= 1);
    expect(appliance.requests.map((r) => r.path).slice(0, 2)).toEqual(['/nocloud/s3cr3t/meta-data', '/agent/v1/hello']);
    expect(appliance.requests[1]!.body.config).toBe(digest);
    expect(readFileSync(join(dir, 'etc', 'hostname'), 'utf8')).toBe('c01\n');
    expect(readFileSync(join(dir, 'hostname-set'), 'utf8')).toBe('c01\n');
    expect(readFileSync(join(dir, 'root', '.ssh', 'authorized_keys'), 'utf8')).toBe(`${keys.join('\n')}\n`);
    expect(statSync(join(dir, 'root', '.ssh', 'authorized_keys')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'root', '.ssh')).mode & 0o777).toBe(0o700);
    // The meta-data is read once a boot, not with every report.
    expect(appliance.count('/nocloud/s3cr3t/meta-data')).toBe(1);
  });

  it('leaves the hostname and keys to cloud-init where the image has it, and says hello without a digest when there is no seed', async () => {
    appliance = await FakeAppliance.start((request) => (request.path.startsWith('/nocloud/') ? ok(`instance-id: shoal-n01-${'cd'.repeat(32)}\nlocal-hostname: c02\n`) : ok('interval=1\naction=none\n')));
    mkdirSync(join(dir, 'etc'));
    startAgent(`${cmdlineFor(appliance.url)} ds=nocloud-net;s=${appliance.url}/nocloud/s3cr3t/`, { SHOAL_ETC_DIR: join(dir, 'etc'), SHOAL_ROOT_HOME: join(dir, 'root'), SHOAL_HOSTNAME_CMD: 'false', SHOAL_CLOUD_INIT_CMD: 'true' });
    await waitFor('a heartbeat', () => appliance!.count('/agent/v1/heartbeat') >= 1);
    expect(appliance.requests.find((r) => r.path === '/agent/v1/hello')!.body.config).toBe('cd'.repeat(32));
    expect(existsSync(join(dir, 'etc', 'hostname'))).toBe(false);
    expect(existsSync(join(dir, 'root'))).toBe(false);
    await appliance.close();
    agent!.kill();

    appliance = await FakeAppliance.start(() => ok('interval=1\naction=none\n'));
    startAgent(cmdlineFor(appliance.url));
    await waitFor('a hello', () => appliance!.count('/agent/v1/hello') >= 1);
    expect(appliance.requests[0]!.body).not.toHaveProperty('config');
  });

  it('reports no system state without systemd, as in the initramfs', async () => {
    appliance = await FakeAppliance.start(() => ok('interval=1\naction=none\n'));
    startAgent(cmdlineFor(appliance.url), { SHOAL_SYSTEMD_DIR: join(dir, 'no-such-dir') });
    await waitFor('a heartbeat', () => appliance!.count('/agent/v1/heartbeat') >= 1);
    for (const r of appliance.requests) expect(r.body).not.toHaveProperty('system');
  });

  it('exits with status 2 and says why when the command line lacks shoal.token', async () => {
    const running = startAgent('console=ttyS0 shoal.url=http://127.0.0.1:9/ shoal.node=n01');
    await waitFor('the agent to exit', () => running.exitCode !== null);
    expect(running.exitCode).toBe(2);
    expect(running.stderr).toContain('shoal.token');
  });

  // write-disk and erase-disk: the "disk" is a file under dev/ with a made-up sys/block entry, and
  // the agent's PATH holds busybox's applets only (the deploy environment's tools), so no command
  // can reach a real block device or a host tool the node lacks.
  describe('disk actions', () => {
    const MiB = 1 << 20;
    const FILL = 0xee; // what the device holds before a job, so zeroed and untouched bytes tell apart
    const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    const image = randomBytes(4 * MiB);

    /** A busybox-only bin directory, plus the named host tools. */
    function busyboxPath(extra: string[] = []): string {
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      for (const applet of execFileSync('busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean)) symlinkSync(execFileSync('which', ['busybox'], { encoding: 'utf8' }).trim(), join(bin, applet));
      for (const tool of extra) symlinkSync(execFileSync('which', [tool], { encoding: 'utf8' }).trim(), join(bin, tool));
      return bin;
    }

    /** A device NAME of BYTES filled with FILL, with partitions (name → start sector) in its sysfs dir. */
    function fakeDisk(name: string, bytes: number, partitions: Record<string, number> = {}): string {
      fakeTree({ [`sys/block/${name}/size`]: `${bytes / 512}\n` });
      for (const [part, start] of Object.entries(partitions)) fakeTree({ [`sys/block/${name}/${part}/start`]: `${start}\n` });
      mkdirSync(join(dir, 'dev'), { recursive: true });
      writeFileSync(join(dir, 'dev', name), Buffer.alloc(bytes, FILL));
      return join(dir, 'dev', name);
    }

    const action = (name: string, fields: Record<string, string | number>) =>
      `action=${name}\n${Object.entries(fields).map(([key, value]) => `disk.${key}=${value}`).join('\n')}\n`;
    const writeFields = (fields: Record<string, string | number> = {}) => ({ job: 'j1', device: 'vda', deviceBytes: 16 * MiB, path: '/images/disk.raw', format: 'raw', bytes: image.length, sha256: sha256(image), ...fields });

    /** The action lines every hello and heartbeat reply carries; a test sets it to send the next job. */
    let currentAction = '';
    /** An appliance that serves IMAGES (path → reply) and answers every hello and heartbeat with currentAction. */
    async function diskAppliance(actionLines: string, images: Record<string, (res: ServerResponse) => void>, interval = 1): Promise<FakeAppliance> {
      currentAction = actionLines;
      return FakeAppliance.start((request) => {
        const serve = images[request.path];
        return serve ? { status: 200, send: serve } : ok(`interval=${interval}\n${currentAction}`);
      });
    }
    const serveBytes = (data: Buffer) => (res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
      res.end(data);
    };

    /** The agent's environment: the made-up sysfs, dev and /proc (no mounts unless a test writes some; the host's own name its disks), busybox's PATH. */
    function diskEnv(extraTools: string[] = []): Record<string, string> {
      if (!existsSync(join(dir, 'proc/mounts'))) fakeTree({ 'proc/mounts': '' });
      return { SHOAL_SYS_DIR: join(dir, 'sys'), SHOAL_DEV_DIR: join(dir, 'dev'), SHOAL_PROC_DIR: join(dir, 'proc'), PATH: busyboxPath(extraTools) };
    }
    const beats = () => appliance!.requests.filter((r) => r.path === '/agent/v1/heartbeat').map((r) => r.body);
    const ended = () => beats().find((b) => b.disk !== 'writing' && b.disk !== 'erasing' && b.disk !== undefined);
    async function startDiskAgent(extraTools: string[] = []): Promise<Record<string, unknown>> {
      startAgent(cmdlineFor(appliance!.url), diskEnv(extraTools));
      await waitFor('the disk job to end', () => ended() !== undefined);
      return ended()!;
    }
    const zeros = (n: number) => Buffer.alloc(n);
    const filled = (n: number) => Buffer.alloc(n, FILL);

    it.each([
      ['raw', (data: Buffer) => data],
      ['gzip', (data: Buffer) => execFileSync('gzip', ['-c'], { input: data, maxBuffer: 64 * MiB })],
      ['zstd', (data: Buffer) => execFileSync('zstd', ['-q', '-c'], { input: data, maxBuffer: 64 * MiB })],
    ] as const)('writes a %s image to the disk, checks it, and writes it once however often the action repeats', async (format, pack) => {
      const device = fakeDisk('vda', 16 * MiB);
      appliance = await diskAppliance(action('write-disk', writeFields({ format, path: `/images/disk.${format}` })), { [`/images/disk.${format}`]: serveBytes(pack(image)) });
      const result = await startDiskAgent(format === 'zstd' ? ['zstd'] : []);
      expect(result).toMatchObject({ disk: 'written', diskJob: 'j1', diskSha256: sha256(image), diskBytes: image.length });
      const disk = readFileSync(device);
      expect(disk.subarray(0, image.length).equals(image)).toBe(true);
      expect(disk.subarray(image.length, 15 * MiB).equals(filled(11 * MiB))).toBe(true);
      expect(disk.subarray(15 * MiB).equals(zeros(MiB))).toBe(true); // the old backup GPT is gone
      // The appliance keeps sending the action; the agent keeps reporting the result and never fetches again.
      const seen = beats().length;
      await waitFor('three more heartbeats', () => beats().length >= seen + 3);
      expect(appliance.count(`/images/disk.${format}`)).toBe(1);
      expect(beats().slice(seen).every((b) => b.disk === 'written' && b.diskJob === 'j1')).toBe(true);
    });

    it('reports its progress while writing, and the result at once when the write ends', async () => {
      const big = randomBytes(12 * MiB);
      fakeDisk('vda', 16 * MiB);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      appliance = await diskAppliance(action('write-disk', writeFields({ bytes: big.length, sha256: sha256(big) })), {
        // Nine MiB (the first, kept aside, and one chunk), then nothing until the test has seen them counted.
        '/images/disk.raw': (res) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
          res.write(big.subarray(0, 9 * MiB));
          void released.then(() => res.end(big.subarray(9 * MiB)));
        },
      }, 4);
      startAgent(cmdlineFor(appliance.url), diskEnv());
      await waitFor('a heartbeat with 9 MiB written', () => beats().some((b) => b.disk === 'writing' && b.diskBytes === 9 * MiB));
      expect(beats().find((b) => b.disk === 'writing')).toMatchObject({ diskJob: 'j1' });
      const releasedAt = Date.now();
      release();
      await waitFor('the written report', () => ended() !== undefined);
      expect(ended()).toMatchObject({ disk: 'written', diskBytes: big.length, diskSha256: sha256(big) });
      // The interval is 4 s: the report came when the job ended, not at the next interval.
      expect(Date.now() - releasedAt).toBeLessThan(3000);
    });

    it('fails on a checksum mismatch and leaves the first MiB zero, so the disk does not boot', async () => {
      const device = fakeDisk('vda', 16 * MiB);
      const other = randomBytes(image.length);
      appliance = await diskAppliance(action('write-disk', writeFields()), { '/images/disk.raw': serveBytes(other) });
      const result = await startDiskAgent();
      expect(result).toMatchObject({ disk: 'failed', diskJob: 'j1', diskError: `checksum mismatch: wrote ${sha256(other)}, expected ${sha256(image)}` });
      expect(result).not.toHaveProperty('diskSha256');
      const disk = readFileSync(device);
      expect(disk.subarray(0, MiB).equals(zeros(MiB))).toBe(true);
      expect(disk.subarray(MiB, image.length).equals(other.subarray(MiB))).toBe(true);
    });

    it('refuses an image larger than the disk, and a disk of another size than the appliance saw, before writing anything', async () => {
      const device = fakeDisk('vda', 16 * MiB);
      appliance = await diskAppliance(action('write-disk', writeFields({ bytes: 32 * MiB })), { '/images/disk.raw': serveBytes(image) });
      const result = await startDiskAgent();
      expect(result).toMatchObject({ disk: 'failed', diskError: `disk too small: the image is ${32 * MiB} bytes, disk vda ${16 * MiB} bytes` });
      expect(readFileSync(device).equals(filled(16 * MiB))).toBe(true);
      // A new job for a disk that changed size since the hardware report.
      currentAction = action('write-disk', writeFields({ job: 'j2', deviceBytes: 8 * MiB }));
      await waitFor('the second job to fail', () => beats().some((b) => b.diskJob === 'j2' && b.disk === 'failed'));
      expect(beats().find((b) => b.diskJob === 'j2' && b.disk === 'failed')!.diskError).toBe(`disk vda is ${16 * MiB} bytes, the appliance expected ${8 * MiB} (another disk)`);
      expect(readFileSync(device).equals(filled(16 * MiB))).toBe(true);
      expect(appliance.count('/images/disk.raw')).toBe(0);
    });

    it('refuses a disk with a mounted file system, as the running root of an installed system', async () => {
      const device = fakeDisk('vda', 16 * MiB);
      fakeTree({ 'proc/mounts': 'sysfs /sys sysfs rw 0 0\n/dev/vdb1 /data ext4 rw 0 0\n/dev/vda2 / ext4 rw,relatime 0 0\n' });
      appliance = await diskAppliance(action('write-disk', writeFields()), { '/images/disk.raw': serveBytes(image) });
      startAgent(cmdlineFor(appliance.url), diskEnv());
      await waitFor('the job to fail', () => ended() !== undefined);
      expect(ended()).toMatchObject({ disk: 'failed', diskError: 'disk vda is in use: /dev/vda2 on /' });
      expect(readFileSync(device).equals(filled(16 * MiB))).toBe(true);
      expect(appliance.count('/images/disk.raw')).toBe(0);
    });

    it('refuses a zstd image where the node has no zstd', async () => {
      const device = fakeDisk('vda', 16 * MiB);
      appliance = await diskAppliance(action('write-disk', writeFields({ format: 'zstd' })), {});
      const result = await startDiskAgent();
      expect(result).toMatchObject({ disk: 'failed', diskError: 'zstd is missing on this node, so a zstd image cannot be written' });
      expect(readFileSync(device).equals(filled(16 * MiB))).toBe(true);
    });

    it('fails with the reason when the image store goes away midway, and leaves the first MiB zero', async () => {
      const device = fakeDisk('vda', 16 * MiB);
      appliance = await diskAppliance(action('write-disk', writeFields()), {
        '/images/disk.raw': (res) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': image.length });
          res.write(image.subarray(0, 2 * MiB), () => setTimeout(() => res.destroy(), 200));
        },
      });
      const result = await startDiskAgent();
      expect(result.disk).toBe('failed');
      expect(result.diskError).toMatch(new RegExp(`^fetching ${appliance.url}/images/disk.raw failed: .+`));
      expect(String(result.diskError).length).toBeLessThanOrEqual(200);
      expect(readFileSync(device).subarray(0, MiB).equals(zeros(MiB))).toBe(true);
    });

    it('cuts off a store that goes silent without closing the connection, with the reason, leaving the first MiB zero', async () => {
      const device = fakeDisk('vda', 32 * MiB);
      const big = Buffer.concat([image, image, image, image]);
      let silent: ServerResponse | undefined;
      appliance = await diskAppliance(action('write-disk', writeFields({ bytes: big.length, sha256: sha256(big), deviceBytes: 32 * MiB })), {
        '/images/disk.raw': (res) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
          // A chunk and a half, then nothing: the connection stays open.
          res.write(big.subarray(0, 12 * MiB));
          silent = res;
        },
      });
      startAgent(cmdlineFor(appliance.url), { ...diskEnv(), SHOAL_DISK_STALL_SECONDS: '2' });
      await waitFor('the disk job to end', () => ended() !== undefined);
      silent?.destroy();
      expect(ended()).toMatchObject({ disk: 'failed', diskError: `the image store sent nothing for 2 s after 12 MiB: fetching ${appliance.url}/images/disk.raw stopped` });
      expect(readFileSync(device).subarray(0, MiB).equals(zeros(MiB))).toBe(true);
    });

    it('puts the GRUB environment block with the boot arguments at envOffset, after the checksum', async () => {
      const device = fakeDisk('vda', 16 * MiB);
      const bootArgs = 'shoal.url=http://10.0.0.1:8080 shoal.node=n01 shoal.token=boot.tok-9 shoal.image=debian-12@3';
      const envOffset = 3 * MiB + 4096; // past the first MiB: written to the disk itself
      const firstMiBOffset = 512 * 1024; // inside it: written into the kept first MiB
      const block = (args: string) => {
        const text = `# GRUB Environment Block\nshoal_args=${args}\n`;
        return Buffer.from(text + '#'.repeat(1024 - text.length));
      };
      appliance = await diskAppliance(action('write-disk', writeFields({ envOffset, bootArgs })), { '/images/disk.raw': serveBytes(image) });
      const result = await startDiskAgent();
      expect(result).toMatchObject({ disk: 'written', diskSha256: sha256(image) });
      let disk = readFileSync(device);
      expect(disk.subarray(envOffset, envOffset + 1024).equals(block(bootArgs))).toBe(true);
      expect(disk.subarray(0, envOffset).equals(image.subarray(0, envOffset))).toBe(true);
      expect(disk.subarray(envOffset + 1024, image.length).equals(image.subarray(envOffset + 1024))).toBe(true);

      currentAction = action('write-disk', writeFields({ job: 'j2', envOffset: firstMiBOffset, bootArgs: 'a=b' }));
      await waitFor('the second job to end', () => beats().some((b) => b.diskJob === 'j2' && b.disk === 'written'));
      disk = readFileSync(device);
      expect(disk.subarray(firstMiBOffset, firstMiBOffset + 1024).equals(block('a=b'))).toBe(true);
      expect(disk.subarray(0, firstMiBOffset).equals(image.subarray(0, firstMiBOffset))).toBe(true);

      // Arguments that do not fit the block are refused before the disk is touched.
      currentAction = action('write-disk', writeFields({ job: 'j3', envOffset, bootArgs: 'x'.repeat(988) }));
      await waitFor('the third job to fail', () => beats().some((b) => b.diskJob === 'j3' && b.disk === 'failed'));
      expect(beats().find((b) => b.diskJob === 'j3')!.diskError).toBe('disk.bootArgs is 988 characters, at most 987 fit the 1024-byte environment block');
      expect(readFileSync(device).equals(disk)).toBe(true);

      // So are arguments with a quote (a `]` inside the alphabet's brackets once ended them early, letting quotes through).
      currentAction = action('write-disk', writeFields({ job: 'j4', envOffset, bootArgs: 'init="/bin/sh"' }));
      await waitFor('the fourth job to fail', () => beats().some((b) => b.diskJob === 'j4' && b.disk === 'failed'));
      expect(beats().find((b) => b.diskJob === 'j4')!.diskError).toBe('disk.bootArgs has characters outside its alphabet');
      expect(readFileSync(device).equals(disk)).toBe(true);
    });

    it('quick erase zeroes both ends of the disk and the start of every partition', async () => {
      const device = fakeDisk('nvme0n1', 16 * MiB, { nvme0n1p1: 2048, nvme0n1p2: 16384 });
      appliance = await diskAppliance(action('erase-disk', { job: 'e1', device: 'nvme0n1', deviceBytes: 16 * MiB, mode: 'quick' }), {});
      expect(await startDiskAgent()).toMatchObject({ disk: 'erased', diskJob: 'e1' });
      const disk = readFileSync(device);
      const zeroed = [0, 1, 8, 15]; // MiB: the table, partition 1 at sector 2048, partition 2 at 16384, the backup table
      for (let mib = 0; mib < 16; mib++) expect([mib, disk.subarray(mib * MiB, (mib + 1) * MiB).equals(zeroed.includes(mib) ? zeros(MiB) : filled(MiB))]).toEqual([mib, true]);
    });

    it('full erase zeroes the whole disk, to its last sector', async () => {
      const size = 16 * MiB + 4096; // not a whole number of MiB
      const device = fakeDisk('vdb', size);
      appliance = await diskAppliance(action('erase-disk', { job: 'e2', device: 'vdb', deviceBytes: size, mode: 'full' }), {});
      expect(await startDiskAgent()).toMatchObject({ disk: 'erased', diskJob: 'e2', diskBytes: size });
      expect(readFileSync(device).equals(zeros(size))).toBe(true);
    });
  });

  describe('kexec', () => {
    const kernel = Buffer.from('a kernel image, as far as this test goes\n');
    const initrd = Buffer.from('an initrd\n');
    const cmdline = 'initrd=initrd.img console=ttyS0 shoal.url=http://10.0.0.1:8080 shoal.node=n01 shoal.token=next-boot.tok shoal.image=compute@2 ds=nocloud-net;s=http://10.0.0.1:8080/nocloud/abc/';
    const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    const kexecLines = (fields: Partial<Record<'job' | 'kernel' | 'kernelSha256' | 'initrd' | 'initrdSha256' | 'cmdline', string>> = {}) =>
      Object.entries({ job: 'k1', kernel: '/images/compute/2/vmlinuz', kernelSha256: sha256(kernel), initrd: '/images/compute/2/initrd.img', initrdSha256: sha256(initrd), cmdline, ...fields })
        .map(([key, value]) => `kexec.${key}=${value}`)
        .join('\n');

    /** A kexec command that records each call's arguments, one per line, and fails `-s` (kexec_file_load) when told to. */
    function fakeKexec(refuseFileLoad = false): string {
      const path = join(dir, 'kexec');
      writeFileSync(
        path,
        `#!/bin/sh\n{ echo CALL; for a in "$@"; do echo "$a"; done; } >> ${join(dir, 'kexec.log')}\n${refuseFileLoad ? '[ "$1" = -s ] && { echo "kexec_file_load failed: Operation not permitted" >&2; exit 1; }\n' : ''}exit 0\n`,
      );
      chmodSync(path, 0o755);
      fakeTree({ 'sys/kernel/kexec_loaded': '0\n', 'proc/sys/kernel/kexec_load_disabled': '0\n' });
      return path;
    }
    const kexecCalls = () =>
      existsSync(join(dir, 'kexec.log'))
        ? readFileSync(join(dir, 'kexec.log'), 'utf8')
            .split('CALL\n')
            .filter(Boolean)
            .map((call) => call.trimEnd().split('\n'))
        : [];
    const kexecEnv = (kexecCmd: string) => ({ SHOAL_KEXEC_CMD: kexecCmd, SHOAL_SYS_DIR: join(dir, 'sys'), SHOAL_PROC_DIR: join(dir, 'proc') });
    const heartbeats = () => appliance!.requests.filter((r) => r.path === '/agent/v1/heartbeat').map((r) => r.body);
    const hello = () => appliance!.requests.find((r) => r.path === '/agent/v1/hello')?.body;

    function kexecAppliance(actionLines: string): Promise<FakeAppliance> {
      const files: Record<string, Buffer> = { '/images/compute/2/vmlinuz': kernel, '/images/compute/2/initrd.img': initrd };
      return FakeAppliance.start((request) => {
        const file = files[request.path];
        if (file) return { status: 200, send: (res) => res.writeHead(200, { 'content-length': file.length }).end(file) };
        return ok(request.path === '/agent/v1/hello' ? 'interval=1\naction=none\ntoken=boot-tok\n' : `interval=1\n${actionLines}\n`);
      });
    }

    it('says in its hello whether this boot can kexec, and why not', async () => {
      const cases: Array<[string, () => Record<string, string>]> = [
        ['ready', () => kexecEnv(fakeKexec())],
        ['no-tool', () => kexecEnv(join(dir, 'no-such-kexec'))],
        ['unsupported', () => ({ ...kexecEnv(fakeKexec()), SHOAL_SYS_DIR: join(dir, 'no-sys') })],
        [
          'disabled',
          () => {
            const env = kexecEnv(fakeKexec());
            fakeTree({ 'proc/sys/kernel/kexec_load_disabled': '1\n' });
            return env;
          },
        ],
      ];
      for (const [want, env] of cases) {
        appliance = await kexecAppliance('action=none');
        startAgent(cmdlineFor(appliance.url), env());
        await waitFor(`a hello (${want})`, () => hello() !== undefined);
        expect([want, hello()!.kexec]).toEqual([want, want]);
        agent!.kill();
        await appliance.close();
      }
      appliance = undefined;
    });

    it('fetches and checks the kernel and initrd, loads them with the command line as one argument, says executing, then goes', async () => {
      appliance = await kexecAppliance(`action=kexec\n${kexecLines()}`);
      // kexec_file_load refused (as for an unsigned kernel under lockdown): kexec_load is tried next.
      startAgent(cmdlineFor(appliance.url), kexecEnv(fakeKexec(true)));
      await waitFor('the agent to go (its power command asked for kexec)', () => existsSync(join(dir, 'power.log')));
      expect(readFileSync(join(dir, 'power.log'), 'utf8')).toBe('kexec\n');
      const work = join(dir, 'work', 'kexec');
      const calls = kexecCalls();
      expect(calls).toEqual([
        ['-s', '-l', join(work, 'vmlinuz'), `--initrd=${join(work, 'initrd')}`, `--command-line=${cmdline}`],
        ['-l', join(work, 'vmlinuz'), `--initrd=${join(work, 'initrd')}`, `--command-line=${cmdline}`],
      ]);
      const states = heartbeats().map((b) => b.kexec);
      // `executing` is reported, and heard, before the agent goes; the kernel and initrd were each fetched once.
      expect(states).toContain('executing');
      expect(states.indexOf('executing')).toBeGreaterThan(-1);
      expect(appliance.count('/images/compute/2/vmlinuz')).toBe(1);
      expect(appliance.count('/images/compute/2/initrd.img')).toBe(1);
      // The fake power command returns: the agent says the kexec did not happen, and does not start the same job again.
      await waitFor('the failure report', () => heartbeats().some((b) => b.kexec === 'failed'));
      expect(heartbeats().find((b) => b.kexec === 'failed')).toMatchObject({ kexecJob: 'k1', kexecError: 'executing the loaded kernel did not happen (exit status 1)' });
      expect(kexecCalls()).toHaveLength(2);
      // The files are gone from the tmpfs once the kernel holds its copy.
      expect(existsSync(join(work, 'vmlinuz'))).toBe(false);
    });

    it('refuses a kernel whose sha256 is not the one asked for, before loading anything, with the reason', async () => {
      appliance = await kexecAppliance(`action=kexec\n${kexecLines({ kernelSha256: 'ab'.repeat(32) })}`);
      startAgent(cmdlineFor(appliance.url), kexecEnv(fakeKexec()));
      await waitFor('the failure report', () => heartbeats().some((b) => b.kexec === 'failed'));
      expect(heartbeats().find((b) => b.kexec === 'failed')!.kexecError).toBe(`checksum mismatch for /images/compute/2/vmlinuz: got ${sha256(kernel)}, expected ${'ab'.repeat(32)}`);
      expect(kexecCalls()).toEqual([]);
      expect(existsSync(join(dir, 'power.log'))).toBe(false);
    });

    it('refuses a command line with a quote, and a path outside the image store, before fetching', async () => {
      for (const [fields, reason] of [
        [{ job: 'k1', cmdline: `${cmdline} init="/bin/sh"` }, 'kexec.cmdline has characters outside its alphabet'],
        [{ job: 'k2', kernel: '/etc/shadow' }, 'kexec paths must start with /images/'],
        [{ job: 'k3', initrd: '/images/../etc/shadow' }, 'kexec path /images/../etc/shadow has characters outside its alphabet, or ..'],
      ] as const) {
        // Each case a new boot: its /run starts empty.
        rmSync(join(dir, 'work'), { recursive: true, force: true });
        appliance = await kexecAppliance(`action=kexec\n${kexecLines(fields)}`);
        startAgent(cmdlineFor(appliance.url), kexecEnv(fakeKexec()));
        await waitFor(`the failure report (${reason})`, () => heartbeats().some((b) => b.kexecJob === fields.job && b.kexec === 'failed'));
        expect(heartbeats().find((b) => b.kexec === 'failed')!.kexecError).toBe(reason);
        expect(appliance.requests.some((r) => r.path.startsWith('/images/'))).toBe(false);
        agent!.kill();
        await appliance.close();
      }
      appliance = undefined;
      expect(kexecCalls()).toEqual([]);
    });
  });
});
