// Private network namespaces for tests: every address a test binds or sends to lives
// inside a namespace the test made, and the namespace is deleted when the test ends.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export class Netns {
  private constructor(readonly name: string) {}

  /** Creates a namespace named `<prefix>-<random>` with loopback up. */
  static create(prefix: string): Netns {
    const name = `${prefix}-${randomBytes(3).toString('hex')}`;
    ip(['netns', 'add', name]);
    const ns = new Netns(name);
    ns.run('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Runs a command inside the namespace and returns its stdout. */
  run(command: string, args: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', this.name, command, ...args], {
      encoding: 'utf8',
      input,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
  }

  /** Starts a long-running process inside the namespace. */
  spawn(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, command, ...args], { stdio: 'pipe', ...options });
  }

  /** A veth pair from this namespace to `peer`, each end addressed (CIDR) and up. */
  link(peer: Netns, local: { ifname: string; cidr: string }, remote: { ifname: string; cidr?: string }): void {
    ip(['link', 'add', local.ifname, 'netns', this.name, 'type', 'veth', 'peer', 'name', remote.ifname, 'netns', peer.name]);
    this.run('ip', ['addr', 'add', local.cidr, 'dev', local.ifname]);
    this.run('ip', ['link', 'set', local.ifname, 'up']);
    if (remote.cidr) peer.run('ip', ['addr', 'add', remote.cidr, 'dev', remote.ifname]);
    peer.run('ip', ['link', 'set', remote.ifname, 'up']);
  }

  /** The pids of every process inside the namespace. */
  pids(): number[] {
    return ip(['netns', 'pids', this.name]).split('\n').filter(Boolean).map(Number);
  }

  /** User + system CPU seconds of every process inside the namespace, from /proc. */
  cpuSeconds(): number {
    const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    let ticks = 0;
    for (const pid of this.pids()) {
      try {
        // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        // exited meanwhile
      }
    }
    return ticks / ticksPerSecond;
  }

  /**
   * Ends every process inside the namespace, not only the one a caller spawned (`npx tsx` leaves
   * its node children running when npx exits): SIGTERM, SIGKILL after `graceMs`, and an error
   * naming the survivors if any outlive SIGKILL by 5 s.
   */
  async stopAll(graceMs: number): Promise<void> {
    const signalAll = (signal: NodeJS.Signals) => {
      for (const pid of this.pids()) {
        try {
          process.kill(pid, signal);
        } catch {
          // already gone
        }
      }
    };
    signalAll('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (this.pids().length > 0 && Date.now() < deadline) await sleep(50);
    signalAll('SIGKILL');
    const hard = Date.now() + 5000;
    while (this.pids().length > 0) {
      if (Date.now() > hard) throw new Error(`processes ${this.pids().join(', ')} in ${this.name} outlived SIGKILL`);
      await sleep(50);
    }
  }

  /** Kills every process still inside the namespace, then deletes it. Safe to call twice. */
  destroy(): void {
    try {
      for (const pid of this.pids()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      ip(['netns', 'delete', this.name]);
    } catch {
      // namespace already deleted
    }
  }
}
