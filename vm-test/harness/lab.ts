// A private network for one test run: a namespace holding a bridge (IPv4 /24 and IPv6 ULA
// /64), the head node's addresses on it, radvd, and one tap per VM. Whatever the lab starts
// runs inside the namespace, is tracked by PID and is stopped by close(), which also runs on
// SIGINT/SIGTERM and process exit. Namespaces a crashed run left behind are swept at the
// next Lab.create().
import { execFileSync, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Netns } from '../../test/support/netns.js';
import { isAlive, sleep, stopProcess, type TrackedProcess } from './processes.js';
import { Vm, type VmHost, type VmOptions } from './vm.js';

/** Every namespace and temp dir a lab makes is named `shlab-<owner pid>-<random>`. */
export const labPrefix = 'shlab';
const netnsDir = '/run/netns';
const repositoryRoot = new URL('../../', import.meta.url).pathname;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface PacketCapture {
  /** Resolves with tcpdump's one-line summaries once `count` packets matched; kills tcpdump and rejects at the deadline. */
  packets(timeoutMs: number): Promise<string[]>;
  stop(): void;
}

const openLabs = new Set<Lab>();
let exitHandlersInstalled = false;

export class Lab implements VmHost {
  readonly bridge = 'br0';
  /** The head node's IPv4 address on the bridge: where the appliance and BMC emulators listen. */
  readonly headIPv4: string;
  readonly ipv4Prefix: string;
  readonly headIPv6: string;
  readonly ipv6Prefix: string;
  private readonly processes: TrackedProcess[] = [];
  private readonly vmList: Vm[] = [];
  private readonly watchdog: NodeJS.Timeout;
  private closed = false;

  private constructor(
    readonly netns: Netns,
    /** Temp dir for generated configs, consoles, logs; removed at close unless SHOAL_LAB_KEEP=1. */
    readonly dir: string,
    private readonly subnet: number,
    ula: string,
  ) {
    this.headIPv4 = this.ipv4(1);
    this.ipv4Prefix = `10.213.${subnet}.0/24`;
    this.headIPv6 = `${ula}::1`;
    this.ipv6Prefix = `${ula}::/64`;
    // A VM stuck in firmware busy-polls a core, so VMs past their maxRunMs are killed even if no test waits on them.
    this.watchdog = setInterval(() => {
      for (const vm of this.vmList) vm.enforceDeadline();
    }, 1_000);
    this.watchdog.unref();
  }

  get name(): string {
    return this.netns.name;
  }

  /** Builds the namespace, bridge, addresses and radvd. Sweeps namespaces left by dead runs first. */
  static create(): Lab {
    sweepLeftovers();
    installExitHandlers();
    const netns = Netns.create(`${labPrefix}-${process.pid}`);
    let dir: string | undefined;
    try {
      dir = mkdtempSync(join(tmpdir(), `${netns.name}-`));
      const subnet = 1 + randomBytes(1)[0]! % 254;
      // A ULA /64: fd00::/8 plus 40 random bits and subnet 1 (RFC 4193).
      const r = randomBytes(5).toString('hex');
      const ula = `fd${r.slice(0, 2)}:${r.slice(2, 6)}:${r.slice(6, 10)}:1`;
      const lab = new Lab(netns, dir, subnet, ula);
      openLabs.add(lab);
      try {
        lab.buildNetwork();
      } catch (error) {
        lab.close();
        throw error;
      }
      return lab;
    } catch (error) {
      netns.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** The address `10.213.X.host` on the lab's /24. */
  ipv4(host: number): string {
    return `10.213.${this.subnet}.${host}`;
  }

  /** The VMs added to this lab. */
  get vms(): readonly Vm[] {
    return this.vmList;
  }

  /** Runs a command inside the namespace, synchronously; throws on a non-zero exit. */
  exec(command: string, args: string[], input?: string): string {
    return this.netns.run(command, args, input);
  }

  /** Runs a command inside the namespace and resolves with its exit code and output; kills it at the deadline. */
  run(command: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
    const child = this.netns.spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${command} ${args.join(' ')}: no exit after ${timeoutMs} ms`));
      }, timeoutMs);
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') });
      });
    });
  }

  /**
   * Starts a long-running process inside the namespace, its output appended to
   * `<dir>/<label>.log`. It is stopped at close(). `ip netns exec` execs the command, so
   * the child's PID is the command's own.
   */
  spawn(label: string, command: string, args: string[], options: Omit<SpawnOptions, 'stdio'> = {}): TrackedProcess {
    if (this.closed) throw new Error(`lab ${this.name} is closed`);
    const logFile = join(this.dir, `${label}.log`);
    const log = openSync(logFile, 'a');
    try {
      const child = this.netns.spawn(command, args, { ...options, stdio: ['ignore', log, log] });
      if (child.pid === undefined) throw new Error(`could not start ${command} in ${this.name}`);
      child.on('error', () => {
        // Reported by the caller's own checks (the process is not alive); never an unhandled error.
      });
      const tracked = { label, pid: child.pid, child, logFile };
      this.processes.push(tracked);
      return tracked;
    } finally {
      closeSync(log);
    }
  }

  /**
   * Starts a TypeScript entry point inside the namespace under tsx (how the appliance and
   * the Redfish emulator run in e2e tests). Runs from the repository root, where node
   * resolves `--import tsx`, unless `options.cwd` says otherwise.
   */
  spawnTs(label: string, entry: string, args: string[] = [], options: Omit<SpawnOptions, 'stdio'> = {}): TrackedProcess {
    return this.spawn(label, process.execPath, ['--import', 'tsx', entry, ...args], { cwd: repositoryRoot, ...options });
  }

  /**
   * Starts tcpdump on the bridge for packets matching `filter` (pcap syntax) and resolves
   * once it is listening, so nothing sent afterwards is missed.
   */
  async capture(filter: string, count = 1): Promise<PacketCapture> {
    const tracked = this.spawn(`tcpdump-${this.processes.length}`, 'tcpdump', ['-l', '-n', '-e', '-i', this.bridge, '-c', String(count), filter]);
    const exited = new Promise<void>((resolve) => tracked.child.once('exit', () => resolve()));
    // tcpdump's output goes to its log file like any lab process; packets are read back from there.
    const lines: string[] = [];
    const read = (): string => readFileSync(tracked.logFile, 'utf8');
    const deadline = Date.now() + 10_000;
    while (!read().includes('listening on')) {
      if (!isAlive(tracked.pid)) throw new Error(`tcpdump exited: ${read()}`);
      if (Date.now() > deadline) throw new Error(`tcpdump not listening after 10 s: ${read()}`);
      await sleep(20);
    }
    return {
      packets: async (timeoutMs) => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
        const outcome = await Promise.race([exited.then(() => 'exited' as const), timedOut]);
        clearTimeout(timer);
        if (outcome === 'timeout') stopProcess(tracked.pid, 200);
        lines.push(...read().split('\n').filter((line) => /^\d\d:\d\d:\d\d\./.test(line)));
        if (outcome === 'timeout') throw new Error(`no ${count} packet(s) matching "${filter}" within ${timeoutMs} ms; saw ${lines.length}`);
        return lines;
      },
      stop: () => {
        stopProcess(tracked.pid, 200);
      },
    };
  }

  /** Adds a VM: a tap on the bridge and a directory for its console, QMP socket and firmware variables. Does not start it. */
  addVm(options: VmOptions): Vm {
    if (this.closed) throw new Error(`lab ${this.name} is closed`);
    if (this.vmList.some((vm) => vm.name === options.name)) throw new Error(`VM ${options.name} already exists in ${this.name}`);
    const index = this.vmList.length;
    const tap = `tap${index}`;
    this.exec('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    this.exec('ip', ['link', 'set', tap, 'master', this.bridge, 'up']);
    const vm = new Vm(this, index, tap, options);
    this.vmList.push(vm);
    return vm;
  }

  /** Stops every VM and process the lab started, deletes the namespace and the temp dir. Idempotent, synchronous. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    for (const vm of this.vmList) vm.kill();
    for (const tracked of [...this.processes].reverse()) stopProcess(tracked.pid, 500);
    // Anything else still in the namespace (a QEMU a BMC script started, a child of a test's process) dies with it.
    this.netns.destroy();
    if (process.env.SHOAL_LAB_KEEP !== '1') rmSync(this.dir, { recursive: true, force: true });
    openLabs.delete(this);
  }

  private buildNetwork(): void {
    const ns = (...args: string[]): string => this.exec('ip', args);
    // No STP and no multicast snooping: ports forward at once and router solicitations/advertisements are never filtered.
    ns('link', 'add', this.bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0', 'mcast_snooping', '0');
    ns('addr', 'add', `${this.headIPv4}/24`, 'dev', this.bridge);
    // nodad: the bridge has no carrier until a VM runs, and a tentative address could not be bound.
    ns('-6', 'addr', 'add', `${this.headIPv6}/64`, 'dev', this.bridge, 'nodad');
    ns('link', 'set', this.bridge, 'up');
    // radvd advertises only when the namespace says it routes IPv6; nothing leaves the namespace anyway.
    this.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    const config = join(this.dir, 'radvd.conf');
    writeFileSync(config, radvdConfig(this.bridge, this.ipv6Prefix), { mode: 0o644 });
    // Without a router advertisement iPXE waits about 16 s for IPv6 after DHCP.
    this.spawn('radvd', 'radvd', ['--nodaemon', '--config', config, '--pidfile', join(this.dir, 'radvd.pid'), '--logmethod', 'stderr']);
  }
}

function radvdConfig(bridge: string, prefix: string): string {
  // AdvDefaultLifetime 0: the head node is no default router; the advertisement only ends iPXE's IPv6 wait.
  return `interface ${bridge} {
  AdvSendAdvert on;
  MinRtrAdvInterval 3;
  MaxRtrAdvInterval 10;
  AdvDefaultLifetime 0;
  prefix ${prefix} {
    AdvOnLink on;
    AdvAutonomous on;
  };
};
`;
}

function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  const closeAll = (): void => {
    for (const lab of [...openLabs]) lab.close();
  };
  process.on('exit', closeAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      closeAll();
      // A listener replaces Node's default exit on the signal; restore it when no one else handles the signal.
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/**
 * Deletes namespaces and temp dirs named `shlab-<pid>-…` whose owner process is gone and
 * which were made before `madeBefore` (default: when this process started): a run killed
 * with SIGKILL leaves them. A concurrent run's lab has a live owner and is left alone.
 * Returns the namespaces deleted.
 */
export function sweepLeftovers(madeBefore = Date.now() - process.uptime() * 1000): string[] {
  const swept: string[] = [];
  const leftover = (name: string, path: string): boolean => {
    const owner = new RegExp(`^${labPrefix}-(\\d+)-`).exec(name)?.[1];
    if (owner === undefined || isAlive(Number(owner))) return false;
    try {
      return statSync(path).mtimeMs < madeBefore;
    } catch {
      return false;
    }
  };
  let namespaces: string[] = [];
  try {
    namespaces = readdirSync(netnsDir);
  } catch {
    // no namespace ever made on this machine
  }
  for (const name of namespaces) {
    if (!leftover(name, join(netnsDir, name))) continue;
    destroyNamespace(name);
    swept.push(name);
  }
  for (const name of readdirSync(tmpdir())) {
    if (leftover(name, join(tmpdir(), name))) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
  return swept;
}

function destroyNamespace(name: string): void {
  const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    for (const pid of ip('netns', 'pids', name).split('\n').filter(Boolean)) stopProcess(Number(pid), 200);
    ip('netns', 'delete', name);
  } catch {
    // deleted meanwhile
  }
}
