// The appliance as its own process (`shoal serve --config FILE` under tsx), for tests that kill it
// with SIGKILL and start it again on the same data directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDeadline } from '../../src/deadline.js';

const ROOT = join(import.meta.dirname, '..', '..');
const children: ChildProcess[] = [];

/**
 * Resolves once the appliance prints the URL it serves (with what it printed up to then); rejects
 * with its stderr if it exits first, or after `startMs` (the child is killed then, so a hung start
 * cannot outlive the test).
 */
export function startChildAppliance(configPath: string, startMs = 60_000): Promise<{ child: ChildProcess; url: string; stdout: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', configPath], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the appliance did not print its URL within ${startMs} ms: ${err.slice(-2000)}`));
    }, startMs);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /appliance at (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, stdout: out });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`appliance exited with ${code}: ${err.slice(-2000)}`));
    });
  });
}

/** SIGKILL, then waits until the process is gone (its SQLite handles released), at most `ms`. */
export async function killAndWait(child: ChildProcess, ms = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await withDeadline(`appliance pid ${child.pid} to exit after SIGKILL`, ms, exited);
}

/** Kills every appliance started so far and waits for each to be gone (call in afterEach). */
export async function killChildAppliances(): Promise<void> {
  await Promise.all(children.splice(0).map((child) => killAndWait(child)));
}

/**
 * Writes `dir/config.yaml` for a plain-HTTP appliance on loopback with a persisted simulated rack (its
 * hardware outlives the appliance's crash) and its store in `dir/data`; returns the path.
 */
export function writeSimApplianceConfig(dir: string, bootStageMs: number): string {
  const path = join(dir, 'config.yaml');
  writeFileSync(
    path,
    [
      `dataDir: ${join(dir, 'data')}`,
      // Plain HTTP, node routes on the API's port: the restart tests call one URL for both.
      'api: { listen: 127.0.0.1, port: 0, tls: off }',
      'log: { level: warn }',
      'modules:',
      '  - name: sim',
      `    options: { persist: true, latencies: { probeMs: 20, powerMs: 300, armMs: 20, bootStageMs: ${bootStageMs}, drainMs: 50, lostAfterMs: 1000 } }`,
      '',
    ].join('\n'),
  );
  return path;
}
