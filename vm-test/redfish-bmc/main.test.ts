// The standalone emulator as the harness runs it: a child process that prints where it
// listens, serves Redfish with the options given on its command line, and exits on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { RedfishActionNotSupportedError, RedfishClient } from '../../modules/redfish/client.js';

const mainPath = fileURLToPath(new URL('./main.ts', import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

async function startCli(args: string[]): Promise<{ child: ChildProcess; ready: { url: string; port: number } }> {
  const child = spawn(process.execPath, ['--import', 'tsx', mainPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  if (!child.stdout) throw new Error('no stdout from the emulator');
  const lines = createInterface({ input: child.stdout });
  const firstLine = await new Promise<string>((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`emulator exited with ${String(code)} before it was ready`));
    child.once('exit', onExit);
    lines.once('line', (line: string) => {
      child.off('exit', onExit);
      resolve(line);
    });
  });
  return { child, ready: JSON.parse(firstLine) as { url: string; port: number } };
}

describe('redfish-bmc CLI', () => {
  it('serves the configured system and reset subset, and exits cleanly on SIGTERM', async () => {
    const { child, ready } = await startCli(['--password', 'pw', '--system-id', 'node7', '--reset-types', 'ForceOn,ForceOff']);
    expect(ready.url).toBe(`http://127.0.0.1:${ready.port}`);
    const client = await RedfishClient.connect({ url: `redfish+http://admin@127.0.0.1:${ready.port}`, password: 'pw' });
    try {
      expect(client.systemPath).toBe('/redfish/v1/Systems/node7');
      expect(await client.reset('on')).toBe('ForceOn');
      expect(await client.getPowerState()).toBe('On');
      await expect(client.reset('graceful-off')).resolves.toBe('ForceOff');
      await expect(client.reset('cycle')).rejects.toThrow(RedfishActionNotSupportedError);
    } finally {
      await client.close();
    }
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  });

  it('refuses invalid options with exit code 2', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', mainPath, '--password', 'pw', '--etag', 'sometimes'], {
      stdio: 'ignore',
    });
    children.push(child);
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(2);
  });
});
