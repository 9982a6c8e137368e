// Reprovisions through kexec in a real Appliance, over the agent protocol: a node whose agent says
// it can kexec is taken to its new image by boot.arm → run.drain → run.kexec, with no power step;
// the kexec'd kernel's hello with the new bootstrap confirms it. A kexec whose kernel never says
// hello falls back to the power cycle, and a node that failed twice is marked so the planner
// reboots it until an operator clears the mark. A load the agent could not do, and a profile that
// forbids kexec, take the plain reboot.
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/appliance.js';
import type { NodeId } from '../../src/domain/node.js';
import { beat, replyValue, startAgentAppliance, type AgentTestAppliance } from '../../test/support/agent-appliance.js';

const FIRST_BOOT = '11111111-1111-4111-8111-111111111111';
const bootId = (n: number) => `${String(n).repeat(8)}-1111-4111-8111-111111111111`;
const hello = (node: NodeId, boot: string, image: string, kexec?: string) => ({
  node,
  bootId: boot,
  image,
  bakedImage: image,
  kernel: '6.1.0-test',
  uptime: 3.2,
  interfaces: [{ name: 'eth0', mac: '52:54:00:12:34:56', ipv4: ['10.0.0.23/24'] }],
  ...(kexec ? { kexec } : {}),
});

describe('reprovision through kexec', () => {
  let t: AgentTestAppliance | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  const observed = (id: NodeId) => t!.appliance.state.observed(id);
  const steps = (id: NodeId) => t!.appliance.engine.executor.planFor(id).steps.map((s) => s.step);
  /** Powers the node on into compute@1 through the (stand-in) network boot; returns its boot token. */
  const upOn = async (id: NodeId, boot: string, image: string, kexec = 'ready') => {
    await until(t!.appliance, () => observed(id).boot?.value === 'kernel' && observed(id).power?.value === 'on', 10_000, 'the network boot served');
    const res = await t!.post('/agent/v1/hello', t!.standIn.armedTokens.get(id)!, hello(id, boot, image, kexec));
    expect(res.status).toBe(200);
    const token = replyValue(res.text, 'token')!;
    await t!.post('/agent/v1/heartbeat', token, beat(id, boot));
    await until(t!.appliance, () => t!.appliance.engine.executor.status(id).phase === 'converged', 10_000, `converged on ${image}`);
    return token;
  };
  /** Desires `image` and takes the running agent through the drain to the kexec action; returns that reply. */
  const drainToKexec = async (id: NodeId, token: string, boot: string, image: string) => {
    await t!.appliance.state.setDesired(id, { image }, 'test');
    await t!.beatUntil(id, token, boot, 'drain');
    await t!.post('/agent/v1/drained', token, beat(id, boot, { state: 'drained' }));
    return t!.beatUntil(id, token, boot, 'kexec', { state: 'drained' });
  };
  /**
   * Brings the node up on compute@1, then takes it through two kexecs (to compute@2, then back)
   * whose kernels never say hello: each run.kexec fails at its deadline, and the engine cuts the
   * power and boots the node from the network.
   */
  const kexecSilentTwice = async (id: NodeId) => {
    let token = await upOn(id, FIRST_BOOT, 'compute@1');
    let boot = FIRST_BOOT;
    for (const [attempt, image] of ['compute@2', 'compute@1'].entries()) {
      const reply = await drainToKexec(id, token, boot, image);
      await t!.post('/agent/v1/heartbeat', token, beat(id, boot, { state: 'drained', kexec: 'executing', kexecJob: replyValue(reply, 'kexec.job') }));
      await until(t!.appliance, () => observed(id).boot?.value === 'kernel', 10_000, `the fallback network boot (attempt ${attempt + 1})`);
      boot = bootId(attempt + 3);
      token = await upOn(id, boot, image);
    }
  };
  const powerSteps = async (id: NodeId) => {
    await t!.appliance.state.flush();
    return (await t!.appliance.state.events({ nodeId: id })).filter((e) => e.facet === 'power' && e.kind === 'observed').map((e) => e.new);
  };

  it('kexecs a running node into its new image: no power step, the new boot says hello with the bootstrap on the kexec command line', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    const token = await upOn(node.id, FIRST_BOOT, 'compute@1');
    expect(observed(node.id).kexec?.value).toBe('available');

    await t.appliance.state.setDesired(node.id, { image: 'compute@2' }, 'test');
    expect(steps(node.id)).toEqual(['boot.arm', 'run.drain', 'run.kexec']);
    const reply = await drainToKexec(node.id, token, FIRST_BOOT, 'compute@2');
    const job = replyValue(reply, 'kexec.job')!;
    expect(job).toMatch(/^kexec-[a-z0-9-]+$/);
    expect(replyValue(reply, 'kexec.kernel')).toBe('/images/compute/2/file');
    expect(replyValue(reply, 'kexec.kernelSha256')).toMatch(/^[0-9a-f]{64}$/);
    const cmdline = replyValue(reply, 'kexec.cmdline')!;
    const bootstrap = /shoal\.token=(\S+)/.exec(cmdline)![1]!;
    expect(bootstrap).toBe(t.standIn.armedTokens.get(node.id));

    // Loading: nothing changes. Executing: the boot facet sees a kexec, not dhcp or loader; the run facet sees it booting.
    await t.post('/agent/v1/heartbeat', token, beat(node.id, FIRST_BOOT, { state: 'drained', kexec: 'loading', kexecJob: job }));
    expect(observed(node.id).run?.value).toBe('drained');
    await t.post('/agent/v1/heartbeat', token, beat(node.id, FIRST_BOOT, { state: 'drained', kexec: 'executing', kexecJob: job }));
    expect(observed(node.id).boot).toMatchObject({ value: 'kexec', detail: 'compute@2' });
    expect(observed(node.id).run?.value).toBe('booting');

    const next = await t.post('/agent/v1/hello', bootstrap, hello(node.id, bootId(2), 'compute@2', 'ready'));
    expect([next.status, t.logs().filter((l) => l.msg === 'agent report refused').map((l) => l.reason)]).toEqual([200, []]);
    await t.post('/agent/v1/heartbeat', replyValue(next.text, 'token')!, beat(node.id, bootId(2)));
    await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'converged', 10_000, 'converged on compute@2');
    expect(observed(node.id).image?.value).toBe('compute@2');
    expect(observed(node.id).kexec).toMatchObject({ value: 'available' });
    expect(observed(node.id).kexec?.detail).toBeUndefined();
    // Powered on once, at the start: the kexec never went through the BMC.
    expect(await powerSteps(node.id)).toEqual(['off', 'on']);
  });

  it('falls back to a power cycle when the kexec\'d kernel never says hello, and after two such failures reboots through the firmware until the mark is cleared', async () => {
    t = await startAgentAppliance({ timeouts: { 'run.kexec': 1_000, 'run.boot': 1_000 } });
    const node = await t.enroll('n1');
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    await kexecSilentTwice(node.id);
    expect(await powerSteps(node.id)).toEqual(['off', 'on', 'off', 'on', 'off', 'on']);
    const kexec = observed(node.id).kexec!;
    expect(kexec.value).toBe('unavailable');
    expect(kexec.detail).toMatch(/^kexec failed 2 times \(last: the kexec'd kernel of compute@1 never said hello; the node was booted through the firmware\); reprovisions reboot through the firmware/);

    // Marked: the next change reboots.
    await t.appliance.state.setDesired(node.id, { image: 'compute@2' }, 'test');
    expect(steps(node.id)).toEqual(['boot.arm', 'run.drain', 'run.reboot', 'run.boot']);
    await t.appliance.state.setDesired(node.id, { image: 'compute@1' }, 'test');

    // An operator clears the mark (the next test keeps it across a restart).
    const cleared = await t.api('POST', `/api/v1/agents/${node.id}/kexec/clear`);
    expect(cleared).toEqual({ status: 200, body: { node: node.id, cleared: true } });
    expect((await t.api('POST', `/api/v1/agents/${node.id}/kexec/clear`)).body.cleared).toBe(false);
  });

  it('keeps the mark of failed kexecs across an appliance restart', async () => {
    t = await startAgentAppliance({ timeouts: { 'run.kexec': 1_000, 'run.boot': 1_000 } });
    const dataDir = t.dataDir;
    const node = await t.enroll('n1');
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    await kexecSilentTwice(node.id);
    await t.stop();
    t = await startAgentAppliance({ dataDir });
    // The next boot's hello (a network boot after a power cut) still finds the node marked.
    const bootstrap = t.standIn.arm(node.id, 'compute@1');
    t.standIn.power.set(node.id, 'on');
    await t.post('/agent/v1/hello', bootstrap, hello(node.id, bootId(9), 'compute@1', 'ready'));
    expect(observed(node.id).kexec?.value).toBe('unavailable');
  });

  it('reboots instead when the agent could not load the new kernel, with the reason on the kexec facet', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    const token = await upOn(node.id, FIRST_BOOT, 'compute@1');
    const reply = await drainToKexec(node.id, token, FIRST_BOOT, 'compute@2');
    const error = 'checksum mismatch for /images/compute/2/file: got 00, expected 11';
    await t.post('/agent/v1/heartbeat', token, beat(node.id, FIRST_BOOT, { state: 'drained', kexec: 'failed', kexecJob: replyValue(reply, 'kexec.job'), kexecError: error }));
    expect(observed(node.id).kexec).toMatchObject({ value: 'unavailable', detail: `the agent could not kexec compute@2: ${error}; this boot reboots through the firmware instead` });
    // The same boot, still drained, is asked to reboot: the firmware path, with no power cycle.
    await t!.beatUntil(node.id, token, FIRST_BOOT, 'reboot', { state: 'drained' });
    expect(await powerSteps(node.id)).toEqual(['off', 'on']);
  });

  it('takes the plain reboot for a node whose profile forbids kexec, saying who forbade it', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    expect((await t.api('PUT', '/api/v1/profiles/firmware-update', { nodes: ['n1'], settings: { kexec: false } })).status).toBe(201);
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    await upOn(node.id, FIRST_BOOT, 'compute@1');
    expect(observed(node.id).kexec).toMatchObject({ value: 'unavailable', detail: 'forbidden by profile:firmware-update (kexec: false)' });
    await t.appliance.state.setDesired(node.id, { image: 'compute@2' }, 'test');
    expect(steps(node.id)).toEqual(['boot.arm', 'run.drain', 'run.reboot', 'run.boot']);
  });

  it('applies a profile that forbids or allows kexec to the running boot at once', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    await upOn(node.id, FIRST_BOOT, 'compute@1');
    expect((await t.api('PUT', '/api/v1/profiles/firmware-update', { nodes: ['n1'], settings: { kexec: false } })).status).toBe(201);
    await until(t.appliance, () => observed(node.id).kexec?.value === 'unavailable', 5_000, 'kexec forbidden');
    expect(observed(node.id).kexec?.detail).toBe('forbidden by profile:firmware-update (kexec: false)');
    expect((await t.api('DELETE', '/api/v1/profiles/firmware-update')).status).toBeLessThan(300);
    await until(t.appliance, () => observed(node.id).kexec?.value === 'available', 5_000, 'kexec allowed again');
    await t.appliance.state.setDesired(node.id, { image: 'compute@2' }, 'test');
    expect(steps(node.id).at(-1)).toBe('run.kexec');
  });

  it('takes the plain reboot when the profile forbids kexec after the hello', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    const token = await upOn(node.id, FIRST_BOOT, 'compute@1');
    expect(observed(node.id).kexec?.value).toBe('available');
    expect((await t.api('PUT', '/api/v1/profiles/firmware-update', { nodes: ['n1'], settings: { kexec: false } })).status).toBe(201);
    await t.appliance.state.setDesired(node.id, { image: 'compute@2' }, 'test');
    await t!.beatUntil(node.id, token, FIRST_BOOT, 'drain');
    await t.post('/agent/v1/drained', token, beat(node.id, FIRST_BOOT, { state: 'drained' }));
    await t!.beatUntil(node.id, token, FIRST_BOOT, 'reboot', { state: 'drained' });
    expect(observed(node.id).kexec).toMatchObject({ value: 'unavailable', detail: 'forbidden by profile:firmware-update (kexec: false)' });
  });

  it('refuses a report with an unknown kexec state', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    const token = await upOn(node.id, FIRST_BOOT, 'compute@1');
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, FIRST_BOOT, { kexec: 'done' }))).status).toBe(400);
    expect((await t.post('/agent/v1/hello', token, hello(node.id, FIRST_BOOT, 'compute@1', 'maybe'))).status).toBe(400);
  });
});
