// A real BMC for a VM: OpenIPMI's ipmi_sim inside the lab's namespace (it must share the
// namespace of the QEMU it starts), listening for IPMI over LAN on the head address, in
// chassis_control mode. ipmi_sim runs a generated POSIX sh script for every power and boot
// command; the script starts QEMU (PXE first when the boot device is pxe), kills it, or
// resets it over QMP, and logs each command so tests can check what the BMC really did.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab, RunResult } from './lab.js';
import { isAlive, pollUntil, shellQuote, stopProcess, type TrackedProcess } from './processes.js';
import type { Vm } from './vm.js';

export interface IpmiBmcOptions {
  /** UDP port on the head address; default 6230 + the VM's index in the lab. */
  port?: number;
  user?: string;
  /** Default `secret`; give another to model a BMC whose password the appliance does not know. */
  password?: string;
}

export class IpmiBmc {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** ipmi_sim's configuration, emulator commands, persisted state and the chassis script. */
  readonly dir: string;
  /** One line per chassis command the script ran: `<unix time> <command…>`. */
  readonly chassisLog: string;
  private process?: TrackedProcess;

  private constructor(
    private readonly lab: Lab,
    readonly vm: Vm,
    options: IpmiBmcOptions,
  ) {
    this.host = lab.headIPv4;
    this.port = options.port ?? 6230 + lab.vms.indexOf(vm);
    this.user = options.user ?? 'admin';
    this.password = options.password ?? 'secret';
    this.dir = join(lab.dir, 'bmc', vm.name);
    this.chassisLog = join(this.dir, 'chassis.log');
  }

  /** Writes the configuration, starts ipmi_sim and resolves once it listens. The VM starts powered off. */
  static async start(lab: Lab, vm: Vm, options: IpmiBmcOptions = {}): Promise<IpmiBmc> {
    const bmc = new IpmiBmc(lab, vm, options);
    await bmc.launch();
    return bmc;
  }

  /** Runs ipmitool against this BMC inside the namespace (cipher suite 3: ipmi_sim answers no cipher-suite query). */
  ipmitool(args: string[], options: { user?: string; password?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return this.lab.run(
      'ipmitool',
      ['-I', 'lanplus', '-C', '3', '-H', this.host, '-p', String(this.port), '-U', options.user ?? this.user, '-P', options.password ?? this.password, ...args],
      options.timeoutMs ?? 30_000,
    );
  }

  /**
   * The chassis commands the script ran so far, without timestamps, e.g. `set boot pxe`,
   * `set power 1`. A command repeated at once is listed once: an IPMI client retransmits
   * a request the BMC is slow to answer, and ipmi_sim runs the script again for it.
   */
  chassisCommands(): string[] {
    if (!existsSync(this.chassisLog)) return [];
    const commands = readFileSync(this.chassisLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.slice(line.indexOf(' ') + 1));
    return commands.filter((command, i) => command !== commands[i - 1]);
  }

  /** Stops ipmi_sim (the VM keeps its power state, like a BMC rebooting). */
  stop(): void {
    if (this.process) stopProcess(this.process.pid);
  }

  private async launch(): Promise<void> {
    mkdirSync(join(this.dir, 'state'), { recursive: true });
    const script = join(this.dir, 'chassis-control.sh');
    writeFileSync(script, chassisScript(this.vm, this.dir, this.chassisLog), { mode: 0o755 });
    writeFileSync(join(this.dir, 'lan.conf'), lanConf(this, script));
    writeFileSync(join(this.dir, 'bmc.emu'), emulatorCommands);
    this.process = this.lab.spawn(`ipmi_sim-${this.vm.name}`, 'ipmi_sim', [
      '-c', join(this.dir, 'lan.conf'),
      '-f', join(this.dir, 'bmc.emu'),
      '-s', join(this.dir, 'state'),
      '-n',
    ]);
    const { pid, logFile } = this.process;
    await pollUntil(`ipmi_sim of ${this.vm.name} to listen on ${this.host}:${this.port}`, 10_000, () => {
      if (!isAlive(pid)) throw new Error(`ipmi_sim exited: ${readFileSync(logFile, 'utf8')}`);
      const sockets = this.lab.exec('ss', ['-Hulnp', `sport = :${this.port}`]);
      return sockets.includes(`pid=${pid},`) ? true : undefined;
    });
  }
}

// The emulated management controller: a BMC at 0x20 with chassis device support, an SEL,
// persisted SDRs (the minimal commands measured in the notes).
const emulatorCommands = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`;

function lanConf(bmc: IpmiBmc, script: string): string {
  // Any stable 16 bytes; the MAC makes each VM's BMC distinct.
  const guid = bmc.vm.mac.replaceAll(':', '').padStart(32, '0');
  return `name "${bmc.vm.name}"
set_working_mc 0x20
startlan 1
  addr ${bmc.host} ${bmc.port}
  priv_limit admin
  allowed_auths_callback none md2 md5 straight
  allowed_auths_user none md2 md5 straight
  allowed_auths_operator none md2 md5 straight
  allowed_auths_admin none md2 md5 straight
  guid ${guid}
endlan
chassis_control "${script} 0x20"
user 2 true "${bmc.user}" "${bmc.password}" admin 10 none md2 md5 straight
`;
}

/**
 * The chassis control script ipmi_sim runs as `<script> 0x20 get <parm>…` (prints
 * `<parm>:<value>` lines) or `<script> 0x20 set <parm> <value>…` (prints nothing on
 * success; errors go to stdout with a non-zero exit).
 */
function chassisScript(vm: Vm, dir: string, chassisLog: string): string {
  const q = shellQuote;
  // One QMP command (argv[2]) on the VM's BMC socket: node is always there (it runs the tests);
  // both lines are queued before the greeting is read, and the second "return" is the command's.
  const qmpCommand = [
    "const s=require('net').connect(process.argv[1]);let n=0;",
    "s.on('data',d=>{n+=(String(d).match(/\"return\"/g)||[]).length;if(n>=2)s.end()});",
    `s.on('error',e=>{console.log(String(e));process.exit(1)});`,
    `s.write('{"execute":"qmp_capabilities"}\\n{"execute":"'+process.argv[2]+'"}\\n');`,
  ].join('');
  return `#!/bin/sh
# Generated by vm-test/harness/ipmi-bmc.ts for VM ${vm.name}; ipmi_sim runs it for every chassis command.
pidfile=${q(vm.pidFile)}
bootfile=${q(join(dir, 'boot-device'))}
runningboot=${q(join(dir, 'running-boot-device'))}
log=${q(chassisLog)}
qemulog=${q(vm.qemuLog)}

qemu_pid() {
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  # A SIGKILLed QEMU leaves its PID file; only a QEMU with this very PID file counts.
  tr '\\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pidfile" || return 1
  echo "$pid"
}

boot_device() { cat "$bootfile" 2>/dev/null || echo default; }

power_on() {
  qemu_pid >/dev/null && return 0
  boot=$(boot_device)
  echo "$boot" >"$runningboot"
  if [ "$boot" = pxe ]; then
    ${vm.backgroundStartCommand('pxe')}
  else
    ${vm.backgroundStartCommand('default')}
  fi
  started=$!
  # Report "on" only once QEMU runs, so "power status" right after "power on" is true. A QEMU
  # that failed (a busy tap…) is a zombie with an empty command line: stop waiting then.
  i=0
  until qemu_pid >/dev/null; do
    grep -q . "/proc/$started/cmdline" 2>/dev/null || { echo "QEMU exited; see $qemulog"; exit 1; }
    [ $i -ge 300 ] && { echo "QEMU did not start within 30 s; see $qemulog"; exit 1; }
    sleep 0.1; i=$((i + 1))
  done
}

power_off() {
  pid=$(qemu_pid) || return 0
  kill "$pid"
  # Wait until QEMU has released the tap, or the next power on cannot open it. qemu_pid, not
  # kill -0: an exited QEMU may stay a zombie (with no tap) until init reaps it, seconds later here.
  i=0
  while qemu_pid >/dev/null; do
    [ $i -eq 30 ] && kill -9 "$pid"
    [ $i -ge 60 ] && { echo "QEMU $pid survives SIGKILL"; exit 1; }
    sleep 0.1; i=$((i + 1))
  done
}

qmp() {
  ${q(process.execPath)} -e ${q(qmpCommand)} ${q(vm.bmcQmpSocket)} "$1" || exit 1
}

reset() {
  qemu_pid >/dev/null || return 0
  # QEMU keeps its boot order across a reset; a different pending boot device needs a new QEMU.
  if [ "$(boot_device)" = "$(cat "$runningboot" 2>/dev/null)" ]; then
    qmp system_reset
  else
    power_off
    power_on
  fi
}

dev=$1
op=$2
shift 2
case $op in
get)
  for parm in "$@"; do
    case $parm in
    power) if qemu_pid >/dev/null; then echo power:1; else echo power:0; fi ;;
    boot) echo "boot:$(boot_device)" ;;
    *) echo "Invalid parameter: $parm"; exit 1 ;;
    esac
  done
  ;;
set)
  while [ $# -gt 0 ]; do
    parm=$1
    [ $# -ge 2 ] || { echo "No value present for parameter $parm"; exit 1; }
    val=$2
    shift 2
    echo "$(date +%s.%N) set $parm $val" >>"$log"
    case $parm in
    power) if [ "$val" = 1 ]; then power_on; else power_off; fi ;;
    reset) [ "$val" = 1 ] && reset ;;
    # ipmitool power soft: the ACPI power button. The guest may ignore it and stay on, as a real one may.
    shutdown) [ "$val" = 1 ] && qemu_pid >/dev/null && qmp system_powerdown ;;
    boot)
      case $val in
      none | pxe | default | cdrom | bios) echo "$val" >"$bootfile" ;;
      *) echo "Invalid boot value: $val"; exit 1 ;;
      esac
      ;;
    identify)
      # The interval may be followed by a force flag (0|1); there is no LED to light here.
      case \${1-} in 0 | 1) shift ;; esac
      ;;
    *) echo "Invalid parameter: $parm"; exit 1 ;;
    esac
  done
  ;;
check) exit 1 ;; # ipmi_sim's "is the device there" probe; chassis control has nothing to check
*) echo "Unknown operation $op for $dev"; exit 1 ;;
esac
exit 0
`;
}
