// The `shoal` command as an operator runs it, against an appliance in the test's process.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Appliance } from '../../src/appliance.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/shoal.js ARGS` with the appliance's URL and token (and `env`) in the environment; never throws on a non-zero exit. */
export async function runShoal(appliance: Appliance, args: string[], timeoutMs: number, env: Record<string, string> = {}): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/shoal.js', ...args], {
      cwd: ROOT,
      env: { ...process.env, SHOAL_URL: appliance.url, SHOAL_TOKEN: appliance.token, ...env },
      timeout: timeoutMs,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as CliResult;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
