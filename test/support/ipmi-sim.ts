// Starts real OpenIPMI ipmi_sim BMCs on loopback for the integration tests and the
// benchmark. Each BMC runs in chassis_control mode with a small shell script that records
// power and boot device in a state file (and every "set" in an event log), so a test can
// see what the BMC was told to do without any QEMU behind it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeIpmiRequest, encodeSessionlessV15Packet } from '../../modules/ipmi/codec.js';
import { getChannelAuthCapabilities } from '../../modules/ipmi/commands.js';

export interface SimulatedBmc {
  host: '127.0.0.1';
  port: number;
  username: string;
  password: string;
  /** What the chassis control script last recorded. */
  state(): Promise<{ power: 'on' | 'off'; boot: string }>;
  /** Every "set" the BMC asked of the chassis, oldest first, e.g. "power 1", "reset 1", "boot pxe". */
  events(): Promise<string[]>;
  stop(): Promise<void>;
}

const SIM_USERNAME = 'admin';
const SIM_PASSWORD = 'secret';

// ipmi_sim calls: SCRIPT DEVICE get power|boot ..., SCRIPT DEVICE set PARM VALUE [PARM VALUE ...].
// It runs on every Get Chassis Status, so it stays cheap: no subprocesses, its directory baked in.
const chassisScript = (dir: string): string => `#!/bin/sh
dir='${dir}'
power=0
boot=default
[ -f "$dir/state" ] && . "$dir/state"
shift
op=$1
shift
case "$op" in
get)
  for parm in "$@"; do
    case "$parm" in
      power) echo "power:$power" ;;
      boot) echo "boot:$boot" ;;
      *) echo "cannot get $parm"; exit 1 ;;
    esac
  done ;;
set)
  while [ $# -ge 2 ]; do
    echo "$1 $2" >> "$dir/events"
    case "$1" in
      power) power=$2 ;;
      boot) boot=$2 ;;
      reset|shutdown) ;;
      *) echo "cannot set $1"; exit 1 ;;
    esac
    shift 2
  done
  printf 'power=%s\\nboot=%s\\n' "$power" "$boot" > "$dir/state.new" && mv "$dir/state.new" "$dir/state" ;;
*) echo "unknown operation $op"; exit 1 ;;
esac
`;

const EMULATOR_COMMANDS = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`;

function lanConfig(port: number, script: string): string {
  return `name "shoal-ipmi-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 ${port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${script} 0x20"
  user 2 true "${SIM_USERNAME}" "${SIM_PASSWORD}" admin 10 none md2 md5 straight
`;
}

/** A UDP port on 127.0.0.1 that was free a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', resolve);
  });
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Resolves once the BMC answers anything to a sessionless Get Channel Authentication Capabilities. */
async function waitUntilListening(port: number, child: ChildProcess, deadlineMs: number): Promise<void> {
  const probe = encodeSessionlessV15Packet(encodeIpmiRequest({ ...getChannelAuthCapabilities('user'), rqSeq: 1 }));
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      const started = Date.now();
      const fail = (message: string): void => {
        clearInterval(timer);
        reject(new Error(message));
      };
      const timer = setInterval(() => {
        if (child.exitCode !== null) fail(`ipmi_sim on port ${port} exited with code ${child.exitCode}`);
        else if (Date.now() - started > deadlineMs) fail(`ipmi_sim on port ${port} did not answer in ${deadlineMs} ms`);
        else socket.send(probe, port, '127.0.0.1');
      }, 50);
      socket.on('error', () => undefined);
      socket.once('message', () => {
        clearInterval(timer);
        resolve();
      });
      socket.bind(0, '127.0.0.1');
    });
  } finally {
    socket.close();
  }
}

/**
 * Starts one ipmi_sim on 127.0.0.1 with its own temporary state directory, on `port` or on a
 * free one (tried again on a new port if another process took it before ipmi_sim bound it).
 */
export async function startIpmiSim(port?: number): Promise<SimulatedBmc> {
  if (port !== undefined) return startIpmiSimOn(port);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startIpmiSimOn(await freeUdpPort());
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

async function startIpmiSimOn(bmcPort: number): Promise<SimulatedBmc> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-ipmi-sim-'));
  const script = join(dir, 'chassis-control.sh');
  await writeFile(script, chassisScript(dir));
  await chmod(script, 0o755);
  await writeFile(join(dir, 'lan.conf'), lanConfig(bmcPort, script));
  await writeFile(join(dir, 'bmc.emu'), EMULATOR_COMMANDS);
  const child = spawn('ipmi_sim', ['-c', join(dir, 'lan.conf'), '-f', join(dir, 'bmc.emu'), '-s', dir, '-n'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000);
  });
  child.on('error', () => undefined); // a spawn failure shows up as the exit below

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exited(child);
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await waitUntilListening(bmcPort, child, 10_000);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}${stderr ? `: ${stderr.trim()}` : ''}`);
  }

  return {
    host: '127.0.0.1',
    port: bmcPort,
    username: SIM_USERNAME,
    password: SIM_PASSWORD,
    async state() {
      const text = await readFile(join(dir, 'state'), 'utf8').catch(() => '');
      const power = /^power=(\d)/m.exec(text)?.[1] === '1' ? 'on' : 'off';
      const boot = /^boot=(\S+)/m.exec(text)?.[1] ?? 'default';
      return { power, boot };
    },
    async events() {
      const text = await readFile(join(dir, 'events'), 'utf8').catch(() => '');
      return text.split('\n').filter((line) => line !== '');
    },
    stop,
  };
}
