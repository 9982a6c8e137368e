// The emulator checked against Redfish clients nobody here wrote: DMTF's `redfishtool`
// and OpenStack's `sushy` (Debian packages). If they accept it, our own client's tests
// against it mean something.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { requirements, skipUnless, type Requirement } from '../../test/support/environment.js';
import { startRedfishBmc, type RedfishBmc, type RedfishBmcOptions } from './emulator.js';
import { FakeMachine } from './fake-machine.js';

const execFileAsync = promisify(execFile);
const username = 'admin';
const password = 'secret';

const bmcs: RedfishBmc[] = [];
afterEach(async () => {
  for (const bmc of bmcs.splice(0)) await bmc.close();
});

async function bmcWith(overrides: Partial<RedfishBmcOptions> = {}, machine = new FakeMachine()) {
  const bmc = await startRedfishBmc({ username, password, systems: [{ id: '1', machine }], ...overrides });
  bmcs.push(bmc);
  return { bmc, machine };
}

/** Runs a peer without blocking the event loop the emulator answers on. */
async function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(command, args, { timeout: 20_000, env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe.skipIf(skipUnless('emulator against redfishtool', requirements({ commands: ['redfishtool'] })))(
  'redfishtool',
  () => {
    // -S Never: plain HTTP to the emulator; -1: act on the single system in the collection.
    const redfishtool = (bmc: RedfishBmc, ...args: string[]) =>
      run('redfishtool', ['-r', `127.0.0.1:${bmc.port}`, '-u', username, '-p', password, '-S', 'Never', ...args]);

    it('lists the Systems collection and reads the power state', async () => {
      const { bmc } = await bmcWith();
      const systems = await redfishtool(bmc, 'Systems');
      expect(systems.code).toBe(0);
      expect(JSON.parse(systems.stdout).Members).toEqual([{ '@odata.id': '/redfish/v1/Systems/1' }]);
      const power = await redfishtool(bmc, 'Systems', '-1', '-P', 'PowerState');
      expect(JSON.parse(power.stdout)).toEqual({ PowerState: 'Off' });
    });

    it('powers on and off through the Reset action', async () => {
      const { bmc, machine } = await bmcWith();
      expect((await redfishtool(bmc, 'Systems', '-1', 'reset', 'On')).code).toBe(0);
      expect(await machine.powerState()).toBe('On');
      expect((await redfishtool(bmc, 'Systems', '-1', 'reset', 'ForceOff')).code).toBe(0);
      expect(await machine.powerState()).toBe('Off');
      expect(machine.commands).toEqual(['powerOn', 'forceOff']);
    });

    it('fails a ResetType the system does not allow, and the machine is untouched', async () => {
      const machine = new FakeMachine();
      const { bmc } = await bmcWith({ systems: [{ id: '1', machine, resetTypes: ['On', 'ForceOff'] }] }, machine);
      expect((await redfishtool(bmc, 'Systems', '-1', 'reset', 'ForceRestart')).code).not.toBe(0);
      expect(machine.commands).toEqual([]);
    });

    it('sets a boot override in a session, with If-Match, and logs out', async () => {
      const { bmc, machine } = await bmcWith({ etag: 'required' });
      const result = await redfishtool(bmc, '-A', 'Session', 'Systems', '-1', 'setBootOverride', 'Once', 'Pxe');
      expect(result.code).toBe(0);
      expect(machine.bootOverride).toMatchObject({ target: 'Pxe', enabled: 'Once' });
      const patch = bmc.requests.find((r) => r.method === 'PATCH');
      expect(patch).toMatchObject({ auth: 'session' });
      expect(patch?.ifMatch).toBeDefined();
      expect(bmc.sessionCount()).toBe(0);
    });

    it('is refused with a wrong password', async () => {
      const { bmc, machine } = await bmcWith();
      const result = await run('redfishtool', ['-r', `127.0.0.1:${bmc.port}`, '-u', username, '-p', 'wrong', '-S', 'Never', 'Systems', '-1', 'reset', 'On']);
      expect(result.code).not.toBe(0);
      expect(machine.commands).toEqual([]);
    });
  },
);

// Debian's python3-sushy is installed for Debian's interpreter; a python3 earlier on PATH (pyenv) lacks it.
const debianPython = '/usr/bin/python3';
function sushyRequirement(): Requirement {
  const probe = spawnSync(debianPython, ['-c', 'import sushy'], { stdio: 'ignore' });
  return probe.status === 0
    ? { ok: true, reason: '' }
    : { ok: false, reason: `missing ${debianPython} with module sushy (Debian package python3-sushy)` };
}

/**
 * Runs a sushy script with `system` bound to the BMC's system 1; the script prints one JSON line.
 * `caFile`: verify HTTPS against this certificate.
 */
async function sushy(bmc: RedfishBmc, script: string, opts: { caFile?: string } = {}): Promise<Record<string, unknown>> {
  const prelude = [
    'import json, sys, sushy',
    "verify = sys.argv[4] if len(sys.argv) > 4 else True",
    "conn = sushy.Sushy(sys.argv[1] + '/redfish/v1', username=sys.argv[2], password=sys.argv[3], verify=verify)",
    "system = conn.get_system('/redfish/v1/Systems/1')",
  ].join('\n');
  // requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`; drop them so ours counts.
  const { REQUESTS_CA_BUNDLE: _requestsBundle, CURL_CA_BUNDLE: _curlBundle, ...env } = process.env;
  const args = ['-c', `${prelude}\n${script}`, bmc.url, username, password, ...(opts.caFile ? [opts.caFile] : [])];
  const result = await run(debianPython, args, env);
  if (result.code !== 0) throw new Error(`sushy script failed (${result.code}): ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
}

describe.skipIf(skipUnless('emulator against python3-sushy', sushyRequirement()))('sushy', () => {
  it('reads power, lists the allowed resets and powers on', async () => {
    const machine = new FakeMachine();
    const { bmc } = await bmcWith(
      { systems: [{ id: '1', machine, resetTypes: ['On', 'ForceOff', 'ForceRestart'] }] },
      machine,
    );
    const result = await sushy(
      bmc,
      [
        'before = system.power_state.value',
        'allowed = sorted(v.value for v in system.get_allowed_reset_system_values())',
        'system.reset_system(sushy.RESET_ON)',
        'system.refresh()',
        'print(json.dumps({"before": before, "allowed": allowed, "after": system.power_state.value}))',
      ].join('\n'),
    );
    expect(result).toEqual({ before: 'Off', allowed: ['ForceOff', 'ForceRestart', 'On'], after: 'On' });
    expect(machine.commands).toEqual(['powerOn']);
    // sushy prefers a session to Basic auth when the BMC offers one.
    expect(bmc.requests.filter((r) => r.path.startsWith('/redfish/v1/Systems')).every((r) => r.auth === 'session')).toBe(true);
  });

  it('sets a UEFI PXE boot override with If-Match, used once by the next power-on', async () => {
    const { bmc, machine } = await bmcWith({ etag: 'required' });
    const result = await sushy(
      bmc,
      [
        'system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE, mode=sushy.BOOT_SOURCE_MODE_UEFI)',
        'system.refresh()',
        'set_to = [system.boot.target.value, system.boot.enabled.value, system.boot.mode.value]',
        'system.reset_system(sushy.RESET_ON)',
        'system.refresh()',
        'print(json.dumps({"set": set_to, "after_boot": [system.boot.target.value, system.boot.enabled.value]}))',
      ].join('\n'),
    );
    expect(result).toEqual({ set: ['Pxe', 'Once', 'UEFI'], after_boot: ['None', 'Disabled'] });
    expect(machine.boots).toEqual([{ target: 'Pxe', enabled: 'Once', mode: 'UEFI' }]);
    expect(bmc.requests.filter((r) => r.method === 'PATCH').every((r) => r.ifMatch !== undefined)).toBe(true);
  });

  it('falls back to Basic auth when sessions are disabled', async () => {
    const { bmc } = await bmcWith({ sessions: false });
    const result = await sushy(bmc, 'print(json.dumps({"power": system.power_state.value}))');
    expect(result).toEqual({ power: 'Off' });
    expect(bmc.requests.find((r) => r.path === '/redfish/v1/Systems/1')?.auth).toBe('basic');
  });

  it.skipIf(skipUnless('sushy over TLS', requirements({ commands: ['openssl'] })))(
    'talks HTTPS and verifies the self-signed certificate when given it as the CA',
    async () => {
      const { bmc } = await bmcWith({ tls: true });
      const dir = await mkdtemp(join(tmpdir(), 'sushy-ca-'));
      try {
        const caFile = join(dir, 'bmc.pem');
        await writeFile(caFile, bmc.certificatePem ?? '');
        expect(await sushy(bmc, 'print(json.dumps({"power": system.power_state.value}))', { caFile })).toEqual({
          power: 'Off',
        });
        // Without the CA it must fail: the certificate really is checked.
        await expect(sushy(bmc, 'print(json.dumps({}))')).rejects.toThrow(/CERTIFICATE_VERIFY_FAILED/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
