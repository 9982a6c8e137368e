// The appliance's key file for BMC passwords: where the configuration puts it (apart from the data
// directory if asked), and a start refused, with the reason, when the key does not fit the store.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Appliance } from '../src/appliance.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { SimRack } from '../modules/sim/sim.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-keyfile-'));
  dirs.push(dir);
  return dir;
}

const start = (dataDir: string, keyFile: string) =>
  Appliance.start(loadConfig(undefined, { dataDir, api: { listen: '127.0.0.1', port: 0 }, secrets: { keyFile } }), { modules: [new SimRack()], log: createLogger('silent') });

describe('the secret key file', () => {
  it('lives where secrets.keyFile says, and a start with another key is refused with the reason', async () => {
    const dataDir = tempDir();
    const keyFile = join(tempDir(), 'bmc.key');
    const first = await start(dataDir, keyFile);
    await first.state.addNodes([{ spec: { name: 'n1', macs: ['52:54:00:00:00:01'], bmc: { scheme: 'ipmi', host: '127.0.0.1', port: 623, username: 'admin' }, arch: 'x86_64', firmware: 'bios', labels: {} }, bmcPassword: 'pw' }], 'test');
    expect(await first.stop()).toEqual([]);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dataDir, 'secret.key'))).toBe(false);

    const again = await start(dataDir, keyFile);
    expect(again.state.bmcPassword(again.state.resolve('n1').id)).toBe('pw');
    expect(await again.stop()).toEqual([]);

    writeFileSync(keyFile, randomBytes(32));
    await expect(start(dataDir, keyFile)).rejects.toThrow(`the BMC passwords in this store were sealed with another key than ${keyFile}`);
  });
});
