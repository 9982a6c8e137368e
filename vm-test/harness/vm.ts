// A QEMU VM under TCG on a lab's bridge: BIOS (SeaBIOS + the NIC's iPXE ROM) or UEFI
// (q35 + OVMF), PXE or direct kernel boot, serial console to a file, QMP on a unix socket.
// QEMU writes its own PID file, so a VM is found the same way whether the test started it
// (start()) or an IpmiBmc's chassis script did.
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { commandLine, isAlive, pollUntil, shellQuote, sleep, stopProcess, type TrackedProcess } from './processes.js';
import { Qmp } from './qmp.js';

export type Firmware = 'bios' | 'uefi';
export type NicModel = 'virtio-net-pci' | 'e1000';

export interface DirectBoot {
  kernel: string;
  initrd: string;
  append: string;
}

/** `pxe`: network first; `default`: the firmware's own order; or a kernel and initrd given to QEMU (no firmware boot). */
export type VmBoot = 'pxe' | 'default' | DirectBoot;

/** What a VM needs of the lab it runs in (the lab implements it; vm.ts does not import lab.ts). */
export interface VmHost {
  /** The lab's temp dir: the VM keeps its console, QMP socket and firmware variables under it. */
  readonly dir: string;
  /** Starts a process in the lab's namespace, tracked and stopped with the lab. */
  spawn(label: string, command: string, args: string[]): TrackedProcess;
}

export interface VmOptions {
  name: string;
  /** Default `52:54:00:5a:00:<index+1>` (QEMU's locally administered prefix). */
  mac?: string;
  firmware?: Firmware;
  nic?: NicModel;
  /** `ipxe` (default): the NIC's iPXE option ROM. `none`: no ROM, so UEFI uses OVMF's own PXE (for the snponly.efi path). */
  nicRom?: 'ipxe' | 'none';
  /** Default 384; the notes measured 170–230 MB resident per VM. */
  memoryMb?: number;
  /** Exit QEMU when the guest reboots instead of rebooting it. Leave off for VMs a BMC resets. */
  noReboot?: boolean;
  /** Killed by the lab's watchdog after running this long (default 180 s): a VM stuck in firmware busy-polls a core. */
  maxRunMs?: number;
  /** Virtio disks, as sparse files in the VM's directory (kept across its boots); after the NIC in boot order. */
  disks?: VmDisk[];
  /**
   * The NIC first in the firmware's boot order, then each disk, on every boot and reset (bootindex),
   * as servers installed to disk are set: iPXE hands over to the disk when the appliance says so.
   * Without it a reset boots a bootable disk before the network.
   */
  networkFirst?: boolean;
  /**
   * UEFI only: OVMF's Secure Boot build with Microsoft's keys enrolled, enforcing, as a server from
   * the shelf: it runs only programs signed by a key in its db (Microsoft's UEFI CA signs shim).
   */
  secureBoot?: boolean;
}

export interface VmDisk {
  sizeMb: number;
  /** What the guest reads from /sys/block/vdX/serial. */
  serial: string;
}

export const firmwareFiles = {
  ovmfCode: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  ovmfVars: '/usr/share/OVMF/OVMF_VARS_4M.fd',
  /** Secure Boot: the firmware with SMM, so the OS cannot write its variables behind it, and variables with Microsoft's PK, KEK and db, Secure Boot on. */
  ovmfSecureBootCode: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd',
  ovmfMicrosoftVars: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
  ipxeRomDir: '/usr/lib/ipxe/qemu',
} as const;

export class Vm {
  readonly name: string;
  readonly mac: string;
  readonly firmware: Firmware;
  readonly nic: NicModel;
  readonly memoryMb: number;
  readonly maxRunMs: number;
  readonly disks: readonly (VmDisk & { path: string })[];
  /** Directory of this VM's console log, QMP socket, PID file, QEMU log and firmware variables. */
  readonly dir: string;
  readonly consoleLog: string;
  /** QMP for tests. QEMU serves one client per socket at a time: close a connection when done. */
  readonly qmpSocket: string;
  /** A second QMP socket, for the chassis script of an IpmiBmc, so a test's open connection never blocks a BMC reset. */
  readonly bmcQmpSocket: string;
  readonly pidFile: string;
  /** QEMU's own stdout/stderr (errors such as a busy tap), appended across starts; the lab logs `qemu-<name>` there. */
  readonly qemuLog: string;
  private readonly varsFile?: string;
  private readonly nicRom: 'ipxe' | 'none';
  private readonly networkFirst: boolean;
  private readonly noReboot: boolean;
  readonly secureBoot: boolean;
  /** When the lab first saw each QEMU PID of this VM, for the watchdog. */
  private readonly firstSeen = new Map<number, number>();

  constructor(
    private readonly lab: VmHost,
    index: number,
    readonly tap: string,
    options: VmOptions,
  ) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(options.name)) throw new Error(`VM name ${options.name}: use lower-case letters, digits and dashes`);
    this.name = options.name;
    this.mac = options.mac ?? `52:54:00:5a:00:${(index + 1).toString(16).padStart(2, '0')}`;
    this.firmware = options.firmware ?? 'bios';
    this.nic = options.nic ?? 'virtio-net-pci';
    this.nicRom = options.nicRom ?? 'ipxe';
    this.networkFirst = options.networkFirst ?? false;
    this.memoryMb = options.memoryMb ?? 384;
    this.noReboot = options.noReboot ?? false;
    this.secureBoot = options.secureBoot ?? false;
    if (this.secureBoot && this.firmware !== 'uefi') throw new Error(`VM ${this.name}: Secure Boot needs firmware: 'uefi'`);
    this.maxRunMs = options.maxRunMs ?? 180_000;
    this.dir = join(lab.dir, 'vm', this.name);
    mkdirSync(this.dir, { recursive: true });
    this.consoleLog = join(this.dir, 'console.log');
    this.qmpSocket = join(this.dir, 'qmp.sock');
    this.bmcQmpSocket = join(this.dir, 'qmp-bmc.sock');
    this.pidFile = join(this.dir, 'qemu.pid');
    this.qemuLog = join(lab.dir, `qemu-${this.name}.log`);
    writeFileSync(this.consoleLog, '');
    this.disks = (options.disks ?? []).map((disk, i) => {
      // A comma would end QEMU's option value; virtio-blk keeps 20 bytes of serial.
      if (!/^[A-Za-z0-9._-]{1,20}$/.test(disk.serial)) throw new Error(`VM ${this.name}: disk serial "${disk.serial}": use 1 to 20 letters, digits, dots, dashes or underscores`);
      const path = join(this.dir, `disk${i}.raw`);
      if (!existsSync(path)) {
        writeFileSync(path, '');
        truncateSync(path, disk.sizeMb * 1024 * 1024); // holes: sparse, costs no disk space
      }
      return { ...disk, path };
    });
    if (this.firmware === 'uefi') {
      // OVMF writes boot entries into its variable store; each VM gets its own copy.
      this.varsFile = join(this.dir, 'OVMF_VARS_4M.fd');
      copyFileSync(this.secureBoot ? firmwareFiles.ovmfMicrosoftVars : firmwareFiles.ovmfVars, this.varsFile);
    }
  }

  /** The full QEMU command line (program first) for a boot; an IpmiBmc's chassis script runs exactly this. */
  qemuCommand(boot: VmBoot): string[] {
    const nicOptions = [`${this.nic},netdev=net0,mac=${this.mac}`];
    if (this.nicRom === 'none') nicOptions.push('romfile=');
    // OVMF ignores -boot order; it follows bootindex, so PXE-first is said on the NIC.
    if ((boot === 'pxe' && this.firmware === 'uefi') || this.networkFirst) nicOptions.push('bootindex=1');
    const args = [
      'qemu-system-x86_64',
      '-nodefaults',
      '-display', 'none',
      // graphics=off makes SeaBIOS and iPXE print to the serial port, so the console log shows firmware progress.
      '-machine', this.firmware === 'uefi' ? `q35,graphics=off${this.secureBoot ? ',smm=on' : ''}` : 'pc,graphics=off',
      '-accel', 'tcg',
      '-m', String(this.memoryMb),
      '-netdev', `tap,id=net0,ifname=${this.tap},script=no,downscript=no`,
      '-device', nicOptions.join(','),
      '-chardev', `file,id=console,path=${this.consoleLog},append=on`,
      '-serial', 'chardev:console',
      '-qmp', `unix:${this.qmpSocket},server=on,wait=off`,
      '-qmp', `unix:${this.bmcQmpSocket},server=on,wait=off`,
      '-pidfile', this.pidFile,
    ];
    if (this.firmware === 'uefi') {
      // Only SMM code may write the variable store, so the guest cannot turn Secure Boot off behind the firmware (the secboot build aborts without SMM).
      if (this.secureBoot) args.push('-global', 'driver=cfi.pflash01,property=secure,value=on');
      args.push(
        '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${this.secureBoot ? firmwareFiles.ovmfSecureBootCode : firmwareFiles.ovmfCode}`,
        '-drive', `if=pflash,format=raw,unit=1,file=${this.varsFile}`,
      );
    }
    this.disks.forEach((disk, i) => args.push('-drive', `file=${disk.path},if=none,id=disk${i},format=raw`, '-device', `virtio-blk-pci,drive=disk${i},serial=${disk.serial}${this.networkFirst ? `,bootindex=${i + 2}` : ''}`));
    if (this.noReboot) args.push('-no-reboot');
    if (boot === 'pxe') {
      if (this.firmware === 'bios') args.push('-boot', 'n');
    } else if (boot !== 'default') {
      args.push('-kernel', boot.kernel, '-initrd', boot.initrd, '-append', boot.append);
    }
    return args;
  }

  /**
   * A POSIX sh command that starts this VM's QEMU in the background, for the scripts a BMC
   * emulator runs. Output goes to qemuLog, not to the caller's pipes: a BMC reads its
   * script's output until EOF, and QEMU outlives the script.
   */
  backgroundStartCommand(boot: 'pxe' | 'default'): string {
    return `${this.qemuCommand(boot).map(shellQuote).join(' ')} </dev/null >>${shellQuote(this.qemuLog)} 2>&1 &`;
  }

  /** Starts QEMU inside the lab's namespace and resolves once it runs (its PID file is written). */
  async start(boot: VmBoot): Promise<number> {
    if (this.pid() !== undefined) throw new Error(`VM ${this.name} is already running`);
    const [program, ...args] = this.qemuCommand(boot);
    const tracked = this.lab.spawn(`qemu-${this.name}`, program!, args);
    // lab.spawn appends to <lab dir>/qemu-<name>.log, which is this.qemuLog.
    try {
      return await pollUntil(`QEMU of VM ${this.name} to start`, 30_000, () => {
        if (!isAlive(tracked.pid)) throw new Error(`QEMU of VM ${this.name} exited: ${this.qemuOutput()}`);
        return this.pid();
      });
    } catch (error) {
      stopProcess(tracked.pid);
      throw error;
    }
  }

  /** The running QEMU's PID, or undefined when the VM is off. */
  pid(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    // A QEMU killed with SIGKILL leaves its PID file behind; the PID may belong to something else by now.
    const argv = commandLine(pid);
    return isAlive(pid) && argv?.includes(this.pidFile) ? pid : undefined;
  }

  get running(): boolean {
    return this.pid() !== undefined;
  }

  /** Resolves with the PID once QEMU runs, e.g. after a BMC was told to power on. */
  waitUntilRunning(timeoutMs: number): Promise<number> {
    return pollUntil(`VM ${this.name} to run`, timeoutMs, () => this.pid());
  }

  /** Resolves once QEMU has exited. */
  async waitUntilOff(timeoutMs: number): Promise<void> {
    await pollUntil(`VM ${this.name} to stop`, timeoutMs, () => (this.pid() === undefined ? true : undefined));
  }

  /** Kills QEMU (SIGTERM, then SIGKILL) and waits until it is gone. No-op when off. */
  kill(): void {
    const pid = this.pid();
    if (pid !== undefined) stopProcess(pid);
  }

  /** A new QMP connection to the running QEMU; close it when done. */
  qmp(timeoutMs = 10_000): Promise<Qmp> {
    return Qmp.connect(this.qmpSocket, timeoutMs);
  }

  /** The whole serial console so far (all boots: the log is appended). */
  console(): string {
    return readFileSync(this.consoleLog, 'utf8');
  }

  /** The console from byte `mark` (a consoleMark()) on: a mark is in bytes, and a console with UTF-8 in it (systemd's) has fewer characters. */
  consoleSince(mark: number): string {
    return readFileSync(this.consoleLog).subarray(mark).toString('utf8');
  }

  /** The console's current length in bytes; pass it as `since` to wait only for output after this point (e.g. after a reset). */
  consoleMark(): number {
    return statSync(this.consoleLog).size;
  }

  /**
   * Resolves with the first match of `pattern` on the console (from byte `since` on).
   * At the deadline the VM is killed — firmware waiting forever busy-polls a core — and
   * the error carries the console's tail.
   */
  async waitForConsole(pattern: RegExp, options: { timeoutMs: number; since?: number }): Promise<RegExpMatchArray> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      const text = readFileSync(this.consoleLog).subarray(options.since ?? 0).toString('utf8');
      const match = pattern.exec(text);
      if (match) return match;
      if (Date.now() >= deadline) {
        this.kill();
        throw new Error(`VM ${this.name}: no ${pattern} on the console within ${options.timeoutMs} ms (VM killed). Console tail:\n${tail(text)}`);
      }
      await sleep(100);
    }
  }

  /** Called by the lab's watchdog: kills QEMU once it has run longer than maxRunMs. */
  enforceDeadline(now = Date.now()): void {
    const pid = this.pid();
    if (pid === undefined) return;
    const since = this.firstSeen.get(pid) ?? now;
    this.firstSeen.set(pid, since);
    if (now - since > this.maxRunMs) {
      writeFileSync(this.qemuLog, `harness: killed after running ${this.maxRunMs} ms (maxRunMs)\n`, { flag: 'a' });
      this.kill();
    }
  }

  private qemuOutput(): string {
    return existsSync(this.qemuLog) ? tail(readFileSync(this.qemuLog, 'utf8')) : '(no output)';
  }
}

function tail(text: string, lines = 25): string {
  // Firmware consoles are full of escape sequences; strip them so the tail is readable in a test report.
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split('\n').slice(-lines).join('\n');
}
