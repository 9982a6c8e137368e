// Private network namespaces for tests: every address a test binds or sends to lives
// inside a namespace the test made, and the namespace is deleted when the test ends.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

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

  /** Kills every process still inside the namespace, then deletes it. Safe to call twice. */
  destroy(): void {
    try {
      const pids = ip(['netns', 'pids', this.name]).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
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
