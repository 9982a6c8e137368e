// Installs to disk through the engine and the agent protocol, in a real Appliance: boot=disk
// image=X runs boot.deploy, the deploy environment's hello (with its hardware) confirms run.boot,
// disk.write travels as action=write-disk with the disk the root-device hint picks, the heartbeats'
// progress and result become the disk facet, and the installed OS says hello with the bootstrap
// the write handed it. Also: the refusals that hold the node failed before anything is written,
// a checksum the agent reads back wrong, and a node that boots again mid-write.
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/appliance.js';
import type { NodeId } from '../../src/domain/node.js';
import type { Hardware } from '../../src/contracts/hardware.js';
import { DIGESTS, STAND_IN_DISK, beat, replyValue, startAgentAppliance, type AgentTestAppliance } from '../../test/support/agent-appliance.js';

const DEPLOY_BOOT = '33333333-3333-4333-8333-333333333333';
const DISK_BOOT = '44444444-4444-4444-8444-444444444444';
const GIB = 1024 ** 3;

const disk = (name: string, sizeBytes: number, serial: string) => ({ name, sizeBytes, model: 'QEMU HARDDISK', serial, wwn: '', rotational: true, removable: false });
const hardware = (disks: Hardware['disks']): Hardware => ({
  firmware: 'bios',
  system: { vendor: 'QEMU', product: 'Standard PC', serial: '', uuid: '' },
  cpu: { model: 'QEMU Virtual CPU', sockets: 1, cores: 1, threads: 1 },
  memoryBytes: 2 * GIB,
  disks,
  nics: [],
});
const hello = (node: NodeId, bootId: string, bakedImage: string, hw?: Hardware) => ({
  node,
  bootId,
  image: bakedImage,
  bakedImage,
  kernel: '6.1.0-test',
  uptime: 3.2,
  interfaces: [{ name: 'eth0', mac: '52:54:00:12:34:56', ipv4: ['10.0.0.23/24'] }],
  ...(hw ? { hardware: hw } : {}),
});

describe('install to disk through the agent', () => {
  let t: AgentTestAppliance | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  /** Desires boot=disk image=`image` and brings the deploy environment up; returns its boot token. */
  const deployUp = async (id: NodeId, disks: Hardware['disks'], image = 'debian@12') => {
    await t!.appliance.state.setDesired(id, { power: 'on', boot: 'disk', image }, 'test');
    await until(t!.appliance, () => t!.appliance.state.observed(id).boot?.value === 'deployed', 10_000, 'the deploy boot served');
    const res = await t!.post('/agent/v1/hello', t!.standIn.armedTokens.get(id)!, hello(id, DEPLOY_BOOT, 'deploy@1', hardware(disks)));
    expect(res.status).toBe(200);
    return replyValue(res.text, 'token')!;
  };

  it('deploys, writes the hinted disk, boots from it, and the installed OS says hello with the write\'s bootstrap', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const state = t.appliance.state;
    const token = await deployUp(node.id, [disk('vda', 8 * GIB, 'SYS'), disk('vdb', 16 * GIB, 'DATA')].slice(0, 1));
    expect(state.observed(node.id).image?.value).toBe('deploy@1');

    const reply = await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'write-disk');
    const job = replyValue(reply, 'disk.job')!;
    expect(job).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(replyValue(reply, 'disk.device')).toBe('vda');
    expect(replyValue(reply, 'disk.deviceBytes')).toBe(String(8 * GIB));
    expect(replyValue(reply, 'disk.path')).toBe(STAND_IN_DISK.path);
    expect(replyValue(reply, 'disk.format')).toBe('zstd');
    expect(replyValue(reply, 'disk.bytes')).toBe(String(STAND_IN_DISK.rawSize));
    expect(replyValue(reply, 'disk.sha256')).toBe(STAND_IN_DISK.rawSha256);
    expect(replyValue(reply, 'disk.envOffset')).toBe(String(STAND_IN_DISK.bootEnv.offset));
    const bootArgs = replyValue(reply, 'disk.bootArgs')!;
    expect(bootArgs).toMatch(new RegExp(`^shoal\\.url=${t.appliance.url.replace(/[.]/g, '\\.')} shoal\\.node=${node.id} shoal\\.token=[A-Za-z0-9_-]{43} shoal\\.image=debian@12$`));

    // Progress, then the result with the sha256 the agent read back.
    await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'writing', diskJob: job, diskBytes: 16 * 1024 * 1024 }));
    expect(state.observed(node.id).disk).toMatchObject({ value: 'writing', detail: '16 of 64 MiB on vda (25 %)' });
    await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'written', diskJob: job, diskBytes: STAND_IN_DISK.rawSize, diskSha256: STAND_IN_DISK.rawSha256 }));
    expect(state.observed(node.id).disk).toMatchObject({ value: 'written', detail: `debian@12 sha256:${STAND_IN_DISK.rawSha256} on vda` });

    // Then the disk boot: next boot disk, drain, reboot; the installed OS presents the bootstrap from its boot arguments.
    const drain = await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'drain');
    expect(drain).not.toContain('disk.job');
    expect(state.observed(node.id).boot?.value).toBe('disk');
    await t.post('/agent/v1/drained', token, beat(node.id, DEPLOY_BOOT, { state: 'drained' }));
    await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'reboot', { state: 'drained' });
    const diskBootstrap = /shoal\.token=(\S+)/.exec(bootArgs)![1]!;
    const installed = await t.post('/agent/v1/hello', diskBootstrap, hello(node.id, DISK_BOOT, 'debian@12'));
    expect(installed.status).toBe(200);
    // Its words stay on the disk and this bootstrap is spent: from its first heartbeat on, every
    // reply carries the bootstrap of its next boot from the disk.
    const diskToken = replyValue(installed.text, 'token')!;
    expect(replyValue(installed.text, 'next')).toBeUndefined();
    const next = replyValue((await t.post('/agent/v1/heartbeat', diskToken, beat(node.id, DISK_BOOT))).text, 'next');
    expect(next).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(replyValue((await t.post('/agent/v1/heartbeat', diskToken, beat(node.id, DISK_BOOT))).text, 'next')).toBe(next);
    await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'converged', 10_000, 'converged on the disk');
    expect(state.observed(node.id).image?.value).toBe('debian@12');
    await state.flush();
    const steps = (await state.events({ nodeId: node.id })).filter((e) => e.facet === 'disk' && e.kind === 'observed').map((e) => e.new);
    // Under way from the moment the job is decided, then the agent's progress, then its result.
    expect(steps).toEqual(['writing', 'writing', 'written']);

    // A reboot nobody armed (a power cut): the next boot from disk says hello with that bootstrap, the spent one is refused.
    const REBOOT = '55555555-5555-4555-8555-555555555555';
    expect((await t.post('/agent/v1/hello', diskBootstrap, hello(node.id, REBOOT, 'debian@12'))).status).toBe(401);
    const again = await t.post('/agent/v1/hello', next!, hello(node.id, REBOOT, 'debian@12'));
    expect(again.status).toBe(200);
    expect(replyValue((await t.post('/agent/v1/heartbeat', replyValue(again.text, 'token')!, beat(node.id, REBOOT))).text, 'next')).not.toBe(next);
  });

  it('installs a disk-only image, and its installed OS runs that image whatever name its tree baked in', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const state = t.appliance.state;
    const token = await deployUp(node.id, [disk('vda', 8 * GIB, 'SYS')], 'site@1');
    const reply = await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'write-disk');
    expect(replyValue(reply, 'disk.path')).toBe('/images/site/1/disk.raw.zst');
    const job = replyValue(reply, 'disk.job')!;
    await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'written', diskJob: job, diskBytes: STAND_IN_DISK.rawSize, diskSha256: STAND_IN_DISK.rawSha256 }));
    expect(state.observed(node.id).disk).toMatchObject({ value: 'written', detail: `site@1 sha256:${STAND_IN_DISK.rawSha256} on vda` });
    await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'drain');
    await t.post('/agent/v1/drained', token, beat(node.id, DEPLOY_BOOT, { state: 'drained' }));
    await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'reboot', { state: 'drained' });
    // The disk was imported from a file made of debian@12's tree: its agent says debian@12.
    const diskBootstrap = /shoal\.token=(\S+)/.exec(replyValue(reply, 'disk.bootArgs')!)![1]!;
    expect((await t.post('/agent/v1/hello', diskBootstrap, hello(node.id, DISK_BOOT, 'debian@12'))).status).toBe(200);
    expect(state.observed(node.id).image).toMatchObject({ value: 'site@1', detail: DIGESTS['site@1'] });
    await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'converged', 10_000, 'converged on the disk');
  });

  it('holds the node failed, writing nothing, when no disk or several match the hint, or the disk is too small', async () => {
    t = await startAgentAppliance();
    const cases: [string, Hardware['disks'], RegExp][] = [
      ['n1', [disk('vda', 8 * GIB, 'A'), disk('vdb', 8 * GIB, 'B')], /2 disks and no root-device hint picks one/],
      ['n2', [disk('vda', 32 * 1024 * 1024, 'A')], /disk too small: vda .* has 33554432 bytes, the image needs 67108864/],
    ];
    for (const [name, disks, reason] of cases) {
      const node = await t.enroll(name);
      const token = await deployUp(node.id, disks);
      await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'failed', 10_000, `${name} failed`);
      expect(t.appliance.engine.executor.status(node.id).reason).toMatch(reason);
      const reply = (await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT))).text;
      expect(reply).not.toContain('write-disk');
    }
  });

  it('fails the write on a checksum the agent read back wrong, and on a boot in the middle of it', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const state = t.appliance.state;
    const token = await deployUp(node.id, [disk('vda', 8 * GIB, 'A')]);
    const job = replyValue(await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'write-disk'), 'disk.job')!;
    await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'written', diskJob: job, diskSha256: '0'.repeat(64) }));
    expect(state.observed(node.id).disk?.value).toBe('failed');
    expect(state.observed(node.id).disk?.detail).toMatch(/^checksum mismatch: the agent read back sha256 0{64} from vda, debian@12's disk is f{64}$/);

    // The engine tries again (a new job); a report of the old job changes nothing.
    const retry = replyValue(await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'write-disk'), 'disk.job')!;
    expect(retry).not.toBe(job);
    await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'written', diskJob: job, diskSha256: STAND_IN_DISK.rawSha256 }));
    expect(state.observed(node.id).disk?.value).not.toBe('written');
    await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'writing', diskJob: retry, diskBytes: 1024 * 1024 }));
    expect(state.observed(node.id).disk?.value).toBe('writing');
    // Power cut: the BMC sees the node off, the engine boots the deploy environment again, and its
    // hello finds the write cut short: the half-written disk is failed, with why.
    state.observe(node.id, 'power', 'off', 'test');
    await until(t.appliance, () => state.observed(node.id).boot?.value === 'deployed' && state.observed(node.id).run?.value === 'booting', 10_000, 'the deploy environment booting again');
    const again = t.standIn.armedTokens.get(node.id)!;
    expect((await t.post('/agent/v1/hello', again, hello(node.id, DISK_BOOT, 'deploy@1', hardware([disk('vda', 8 * GIB, 'A')])))).status).toBe(200);
    expect(state.observed(node.id).disk?.value).toBe('failed');
    expect(state.observed(node.id).disk?.detail).toMatch(/^interrupted: the node booted again during the write \(1 of 64 MiB on vda \(1 %\)\); its first MiB stays zero/);
  });

  it('fails a write whose deploy environment goes silent (a reset the BMC never saw), and boots it again for a clean retry', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const state = t.appliance.state;
    const token = await deployUp(node.id, [disk('vda', 8 * GIB, 'A')]);
    const first = t.standIn.armedTokens.get(node.id);
    const job = replyValue(await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'write-disk'), 'disk.job')!;
    await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'writing', diskJob: job, diskBytes: 8 * 1024 * 1024 }));
    // No more heartbeats: the node reset and its new boot's hello, with the spent bootstrap, is refused.
    expect((await t.post('/agent/v1/hello', first!, hello(node.id, DISK_BOOT, 'deploy@1'))).status).toBe(401);
    await until(t.appliance, () => state.observed(node.id).disk?.value === 'failed', 10_000, 'the silent write failed');
    expect(state.observed(node.id).run?.value).toBe('lost');
    expect(state.observed(node.id).disk?.detail).toMatch(/^interrupted: the node went silent during the write \(8 of 64 MiB on vda \(12 %\)\); its first MiB stays zero/);
    // The retry boots the deploy environment again, with a new bootstrap, and writes anew.
    await until(t.appliance, () => t!.standIn.armedTokens.get(node.id) !== first && state.observed(node.id).boot?.value === 'deployed', 20_000, 'the deploy environment armed again');
    const RETRY_BOOT = '66666666-6666-4666-8666-666666666666';
    const again = await t.post('/agent/v1/hello', t.standIn.armedTokens.get(node.id)!, hello(node.id, RETRY_BOOT, 'deploy@1', hardware([disk('vda', 8 * GIB, 'A')])));
    expect(again.status).toBe(200);
    const retry = replyValue(await t!.beatUntil(node.id, replyValue(again.text, 'token')!, RETRY_BOOT, 'write-disk'), 'disk.job');
    expect(retry).not.toBe(job);
  });

  it('fails each attempt at once when the agent fails it the same way again (a corrupted image in the store)', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const state = t.appliance.state;
    const token = await deployUp(node.id, [disk('vda', 8 * GIB, 'A')]);
    const seen: string[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      const job = replyValue(await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'write-disk'), 'disk.job')!;
      expect(seen).not.toContain(job);
      seen.push(job);
      expect(state.observed(node.id).disk).toMatchObject({ value: 'writing', detail: '0 of 64 MiB on vda (0 %)' });
      await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, { disk: 'failed', diskJob: job, diskError: 'unpacking the zstd image failed: checksum' }));
      expect(state.observed(node.id).disk).toMatchObject({ value: 'failed', detail: 'write of vda failed: unpacking the zstd image failed: checksum' });
    }
    // The second failure, the same as the first, failed its step too: a third attempt is under way.
    const third = replyValue(await t!.beatUntil(node.id, token, DEPLOY_BOOT, 'write-disk'), 'disk.job')!;
    expect(seen).not.toContain(third);
  });

  it('refuses a heartbeat whose disk fields are not the protocol\'s', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const token = await deployUp(node.id, [disk('vda', 8 * GIB, 'A')]);
    for (const bad of [{ disk: 'half-done' }, { diskJob: 'a b' }, { diskSha256: 'xyz' }, { diskError: 'quote " here' }, { diskBytes: -1 }]) {
      expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, DEPLOY_BOOT, bad))).status, JSON.stringify(bad)).toBe(400);
    }
  });
});
