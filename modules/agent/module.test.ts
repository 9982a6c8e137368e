// The agent module in a real Appliance, spoken to over HTTP exactly as PROTOCOL.md's agent speaks:
// bootstrap tokens spent by the first hello for the boot token in its reply, replays refused and
// recorded, tokens bound to one boot, refusals and their logs, the run and image observations,
// drain and reboot delivered through the engine, lost on silence, and a restart that keeps agents.
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/appliance.js';
import type { NodeId } from '../../src/domain/node.js';
import { DIGESTS, replyValue, startAgentAppliance, type AgentTestAppliance } from '../../test/support/agent-appliance.js';

const BOOT_A = '11111111-1111-4111-8111-111111111111';
const BOOT_B = '22222222-2222-4222-8222-222222222222';

const hello = (node: NodeId, bootId: string, bakedImage: string | null = 'compute@1') => ({
  node,
  bootId,
  image: bakedImage,
  bakedImage,
  kernel: '6.1.0-test',
  uptime: 7.61,
  interfaces: [{ name: 'eth0', mac: '52:54:00:12:34:56', ipv4: ['10.0.0.23/24'] }],
});
const beat = (node: NodeId, bootId: string, state = 'running') => ({ node, bootId, uptime: 68.02, state });

describe('agent module', () => {
  let t: AgentTestAppliance | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  const arm = (id: NodeId, ref = 'compute@1') => t!.standIn.arm(id, ref);
  /** Says hello with the boot's bootstrap token and returns the boot token the reply hands out. */
  const helloForToken = async (id: NodeId, bootstrap: string, bootId: string, bakedImage = 'compute@1') => {
    const res = await t!.post('/agent/v1/hello', bootstrap, hello(id, bootId, bakedImage));
    expect(res.status).toBe(200);
    const token = replyValue(res.text, 'token');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    return token!;
  };
  const refusals = () => t!.logs().filter((l) => l.msg === 'agent report refused');

  it('accepts a hello: run ready, image observed with its digest, replies interval, action and the boot token', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const bootstrap = arm(node.id);
    const res = await t.post('/agent/v1/hello', bootstrap, hello(node.id, BOOT_A));
    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^text\/plain/);
    const token = replyValue(res.text, 'token')!;
    expect(res.text).toBe(`interval=1\naction=none\ntoken=${token}\n`);
    expect(token).not.toBe(bootstrap);
    expect(t.appliance.state.observed(node.id).run?.value).toBe('ready');
    expect(t.appliance.state.observed(node.id).image).toMatchObject({ value: 'compute@1', detail: DIGESTS['compute@1'] });

    // Idempotent per boot with the boot token (an agent restarted on the node): answered without a new token.
    expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_A))).text).toBe('interval=1\naction=none\n');
    const beatRes = await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A));
    expect(beatRes.status).toBe(200);
    expect(beatRes.text).toBe('interval=1\naction=none\n');
    expect(t.agent.status(node.id)).toMatchObject({ reports: 3, lost: false, action: 'none' });
    const listed = await fetch(`${t.appliance.url}/api/v1/agents`, { headers: { authorization: `Bearer ${t.appliance.token}` } });
    expect(await listed.json()).toMatchObject({ agents: [{ node: node.id, reports: 3, lost: false, action: 'none' }] });
    expect((await fetch(`${t.appliance.url}/api/v1/agents`)).status).toBe(401);
    for (const secret of [bootstrap, token]) expect(t.logText()).not.toContain(secret);
  });

  it('passes the configuration digest a hello reports to the module that owns the config facet, and refuses a malformed one', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const digest = 'ef'.repeat(32);
    const malformed = await t.post('/agent/v1/hello', arm(node.id), { ...hello(node.id, BOOT_A), config: 'not-a-digest' });
    expect(malformed.status).toBe(400);
    expect(t.standIn.configReports).toEqual([]);
    const res = await t.post('/agent/v1/hello', arm(node.id), { ...hello(node.id, BOOT_A), config: digest });
    expect(res.status).toBe(200);
    expect(t.standIn.configReports).toEqual([{ nodeId: node.id, digest }]);
  });

  const hardware = {
    firmware: 'bios' as const,
    system: { vendor: 'QEMU', product: 'Standard PC (i440FX + PIIX, 1996)', serial: '', uuid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427' },
    cpu: { model: 'QEMU Virtual CPU version 2.5+', sockets: 1, cores: 2, threads: 2 },
    memoryBytes: 1_073_741_824,
    disks: [{ name: 'vda', sizeBytes: 8_589_934_592, model: '', serial: 'shoal-disk-1', wwn: '', rotational: true, removable: false }],
    nics: [{ name: 'ens3', mac: '52:54:00:12:34:56', speedMbps: 0, driver: 'virtio_net' }],
  };

  it('records the hardware a hello reports, serves it to operators, and refuses a malformed report without recording anything', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const api = (path: string) => fetch(`${t!.appliance.url}/api/v1${path}`, { headers: { authorization: `Bearer ${t!.appliance.token}` } });
    expect((await api('/nodes/n1/hardware')).status).toBe(404);

    const bootstrap = arm(node.id);
    // A disk name outside the kernel's alphabet: the whole hello is refused, nothing observed.
    const bad = { ...hardware, disks: [{ ...hardware.disks[0]!, name: 'vda"; rm -rf /' }] };
    expect((await t.post('/agent/v1/hello', bootstrap, { ...hello(node.id, BOOT_A), hardware: bad })).status).toBe(400);
    expect(t.appliance.state.observed(node.id).hardware).toBeUndefined();
    expect(t.appliance.state.observed(node.id).run?.value).not.toBe('ready');

    expect((await t.post('/agent/v1/hello', bootstrap, { ...hello(node.id, BOOT_A), hardware })).status).toBe(200);
    const view = (await (await api('/nodes/n1/hardware')).json()) as { node: string; digest: string; hardware: unknown };
    expect(view).toMatchObject({ node: 'n1', hardware });
    expect(view.digest).toMatch(/^sha256:[0-9a-f]{16}$/);
    expect(t.appliance.state.observed(node.id).hardware?.value).toBe(view.digest);

    // The next boot of the same machine with a disk added: a new digest, so the change is in the event log.
    const bigger = { ...hardware, disks: [...hardware.disks, { ...hardware.disks[0]!, name: 'vdb', serial: 'shoal-disk-2' }] };
    const second = arm(node.id);
    expect((await t.post('/agent/v1/hello', second, { ...hello(node.id, BOOT_B), hardware: bigger })).status).toBe(200);
    const events = await t.appliance.state.events({ nodeId: node.id });
    const changes = events.filter((e) => e.kind === 'observed' && e.facet === 'hardware');
    expect(changes.map((e) => e.old === null)).toEqual([true, false]);
    expect(JSON.parse(changes[1]!.detail!)).toEqual(bigger);
  });

  it('observes what systemd says of the node from hello and heartbeats, news only when it changes', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const token = await helloForToken(node.id, arm(node.id), BOOT_A);
    expect(t.appliance.state.observed(node.id).system).toBeUndefined();
    for (const system of ['starting', 'running', 'running', 'degraded']) {
      expect((await t.post('/agent/v1/heartbeat', token, { ...beat(node.id, BOOT_A), system })).status).toBe(200);
    }
    expect(t.appliance.state.observed(node.id).system?.value).toBe('degraded');
    const changes = (await t.appliance.state.events({ nodeId: node.id })).filter((e) => e.facet === 'system').map((e) => e.new);
    expect(changes).toEqual(['starting', 'running', 'degraded']);
    // Not a word systemd would print: refused like any bad field, and nothing recorded.
    expect((await t.post('/agent/v1/heartbeat', token, { ...beat(node.id, BOOT_A), system: 'running; rm -rf /' })).status).toBe(400);
    expect(t.appliance.state.observed(node.id).system?.value).toBe('degraded');
    // The next boot is a busybox image, without systemd: the last boot's word does not stay.
    await helloForToken(node.id, arm(node.id), BOOT_B);
    expect(t.appliance.state.observed(node.id).system?.value).toBe('none');
  });

  it('accepts a hello without hardware, from an agent built before it was reported', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    expect((await t.post('/agent/v1/hello', arm(node.id), hello(node.id, BOOT_A))).status).toBe(200);
    expect(t.appliance.state.observed(node.id).hardware).toBeUndefined();
  });

  it('spends the bootstrap on the first hello: the boot token works, the bootstrap no longer does', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const bootstrap = arm(node.id);
    const token = await helloForToken(node.id, bootstrap, BOOT_A);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
    // Once the boot token has been used, the bootstrap is spent even for the boot that spent it.
    expect((await t.post('/agent/v1/hello', bootstrap, hello(node.id, BOOT_A))).status).toBe(401);
    expect((await t.post('/agent/v1/heartbeat', bootstrap, beat(node.id, BOOT_A))).status).toBe(401);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
    expect(refusals().map((l) => [l.status, l.reason, l.node])).toEqual([
      [401, 'bootstrap token already spent', node.id],
      [401, 'bootstrap token already spent', node.id],
    ]);
  });

  it('refuses a replayed bootstrap from another boot and records an event naming the node', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const bootstrap = arm(node.id);
    const token = await helloForToken(node.id, bootstrap, BOOT_A);
    // Whoever read the bootstrap (iPXE script, /proc/cmdline) tries it with a boot of their own.
    const replay = await t.post('/agent/v1/hello', bootstrap, hello(node.id, BOOT_B));
    expect(replay.status).toBe(401);
    expect(replyValue(replay.text, 'token')).toBeUndefined();
    await t.appliance.state.flush();
    const events = (await t.appliance.state.events({ nodeId: node.id })).filter((e) => e.facet === 'boot-token');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: 'observed', nodeId: node.id, new: 'replayed', writer: 'agent' });
    expect(events[0]!.detail).toContain(`node n1`);
    expect(events[0]!.detail).toContain(BOOT_B);
    expect(events[0]!.detail).toContain('may have been stolen');
    expect(refusals()).toEqual([expect.objectContaining({ status: 401, reason: 'bootstrap token already spent', node: node.id, bootId: BOOT_B, spentBy: BOOT_A })]);
    // The boot that spent it is untouched.
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
    expect(t.appliance.state.observed(node.id).run?.value).toBe('ready');
  });

  it('answers a hello repeated with the bootstrap before the boot token was used (a lost reply) with a new boot token', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const bootstrap = arm(node.id);
    const lost = await helloForToken(node.id, bootstrap, BOOT_A);
    const second = await helloForToken(node.id, bootstrap, BOOT_A);
    expect(second).not.toBe(lost);
    // Only the token last handed out is good: whoever got the first reply (if anyone) is shut out.
    expect((await t.post('/agent/v1/heartbeat', lost, beat(node.id, BOOT_A))).status).toBe(401);
    expect((await t.post('/agent/v1/heartbeat', second, beat(node.id, BOOT_A))).status).toBe(200);
    expect(refusals().map((l) => l.reason)).toEqual(['superseded token']);
  });

  it('takes a bootstrap only while its boot is armed', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const bootstrap = arm(node.id);
    // The node went off before its agent spoke: that arming is spent (boot=idle).
    t.appliance.state.observe(node.id, 'boot', 'idle', 'test');
    expect((await t.post('/agent/v1/hello', bootstrap, hello(node.id, BOOT_A))).status).toBe(401);
    expect(refusals().map((l) => [l.status, l.reason])).toEqual([[401, 'boot not armed']]);
    expect(t.appliance.state.observed(node.id).run).toBeUndefined();
    // Armed again: a new bootstrap, and only it.
    const next = arm(node.id);
    expect((await t.post('/agent/v1/hello', bootstrap, hello(node.id, BOOT_A))).status).toBe(401);
    await helloForToken(node.id, next, BOOT_A);
  });

  it('answers 409 to a heartbeat before any hello, and 400 to a bad body without changing anything', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const bootstrap = arm(node.id);
    expect((await t.post('/agent/v1/heartbeat', bootstrap, beat(node.id, BOOT_A))).status).toBe(409);
    expect((await t.post('/agent/v1/hello', bootstrap, { ...hello(node.id, BOOT_A), bootId: 'NOT-HEX' })).status).toBe(400);
    expect((await t.post('/agent/v1/hello', bootstrap, '{"node":')).status).toBe(400);
    expect((await t.post('/agent/v1/hello', undefined, { ...hello(node.id, BOOT_A), token: 42 })).status).toBe(400);
    expect(t.appliance.state.observed(node.id).run).toBeUndefined();
    // The bootstrap was not spent by the rejected hellos: any boot may still be the first.
    const token = await helloForToken(node.id, bootstrap, BOOT_B);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_B, 'sleeping'))).status).toBe(400);
    expect(refusals().map((l) => [l.status, l.reason])).toEqual([
      [409, 'report before hello'],
      [400, 'invalid body'],
      [400, 'unreadable body'],
      [400, 'invalid body'],
      [400, 'invalid body'],
    ]);
  });

  it('refuses a missing token, a protocol 1 bearer header, a token of another node, and another boot with a bound token, logging each without the token', async () => {
    t = await startAgentAppliance();
    const n1 = await t.enroll('n1');
    const n2 = await t.enroll('n2');
    const bootstrap1 = arm(n1.id);
    const bootstrap2 = arm(n2.id);
    expect((await t.post('/agent/v1/hello', undefined, hello(n1.id, BOOT_A))).status).toBe(401);
    expect((await t.post('/agent/v1/hello', undefined, hello(n1.id, BOOT_A), { authorization: `Bearer ${bootstrap1}` })).status).toBe(401);
    expect((await t.post('/agent/v1/hello', bootstrap2, hello(n1.id, BOOT_A))).status).toBe(401);
    const token1 = await helloForToken(n1.id, bootstrap1, BOOT_A);
    expect((await t.post('/agent/v1/hello', token1, hello(n1.id, BOOT_B))).status).toBe(401);
    expect((await t.post('/agent/v1/heartbeat', token1, beat(n1.id, BOOT_B))).status).toBe(401);
    expect(t.appliance.state.observed(n2.id).run).toBeUndefined();

    expect(refusals().map((l) => [l.status, l.reason])).toEqual([
      [401, 'no token'],
      [401, 'token in a bearer header (an agent of protocol 1: rebuild its image)'],
      [401, 'token of another node'],
      [401, 'token bound to another boot'],
      [401, 'token bound to another boot'],
    ]);
    expect(refusals()[2]).toMatchObject({ node: n2.id, claimedNode: n1.id });
    for (const secret of [bootstrap1, bootstrap2, token1]) expect(t.logText()).not.toContain(secret);
  });

  it('a newer bootstrap retires the older for new boots; the running boot keeps its token until the new boot says hello', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const first = await helloForToken(node.id, arm(node.id), BOOT_A);

    const unused = arm(node.id, 'compute@2');
    const second = arm(node.id, 'compute@2');
    // The unused bootstrap never started a boot: stale at once.
    expect((await t.post('/agent/v1/hello', unused, hello(node.id, BOOT_B, 'compute@2'))).status).toBe(401);
    // The running boot is still heard (it must be, to be asked to drain and reboot).
    expect((await t.post('/agent/v1/heartbeat', first, beat(node.id, BOOT_A))).status).toBe(200);
    expect((await t.post('/agent/v1/hello', first, hello(node.id, BOOT_B))).status).toBe(401);

    const secondToken = await helloForToken(node.id, second, BOOT_B, 'compute@2');
    expect(t.appliance.state.observed(node.id).image).toMatchObject({ value: 'compute@2', detail: DIGESTS['compute@2'] });
    // Once the new boot is up, the old one is stale.
    expect((await t.post('/agent/v1/heartbeat', first, beat(node.id, BOOT_A))).status).toBe(401);
    expect((await t.post('/agent/v1/heartbeat', secondToken, beat(node.id, BOOT_B))).status).toBe(200);

    expect(refusals().map((l) => l.reason)).toEqual(['superseded token', 'token bound to another boot', 'superseded token']);
    expect(refusals()[0]).toMatchObject({ node: node.id, status: 401 });
    for (const token of [first, unused, second, secondToken]) expect(t.logText()).not.toContain(token);
  });

  it('keeps bound agents accepted across an appliance restart, and the spent bootstrap refused', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const bootstrap = arm(node.id);
    const token = await helloForToken(node.id, bootstrap, BOOT_A);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
    const dataDir = t.dataDir;
    await t.stop();
    t = await startAgentAppliance({ dataDir });
    try {
      expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
      expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_B))).status).toBe(401);
      expect((await t.post('/agent/v1/hello', bootstrap, hello(node.id, BOOT_A))).status).toBe(401);
      expect(t.appliance.state.observed(node.id).run?.value).toBe('ready');
    } finally {
      await t.close();
      t = undefined;
      const { rmSync } = await import('node:fs');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('drains through the engine: the next reply says drain, then drained, then power goes off', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const state = t.appliance.state;
    await state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    await until(t.appliance, () => state.observed(node.id).run?.value === 'booting', 10_000, 'power on and booting');
    const token = await helloForToken(node.id, t.standIn.armedTokens.get(node.id)!, BOOT_A);
    await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'converged', 10_000, 'converged');

    await state.setDesired(node.id, { power: 'off', image: null }, 'test');
    await until(t.appliance, () => t!.agent.status(node.id)?.action === 'drain', 10_000, 'a drain to deliver');
    const drainReply = await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A));
    expect(drainReply.text).toBe('interval=1\naction=drain\n');
    expect(state.observed(node.id).run?.value).toBe('draining');
    // Repeated until the effect is seen: the agent ignores it while draining.
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A, 'draining'))).text).toBe('interval=1\naction=drain\n');
    expect((await t.post('/agent/v1/drained', token, beat(node.id, BOOT_A, 'drained'))).text).toBe('interval=1\naction=none\n');
    await until(t.appliance, () => state.observed(node.id).power?.value === 'off', 10_000, 'power off');
    // A report in flight as the power went does not bring the run back.
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A, 'drained'))).status).toBe(200);
    await state.flush();
    const runs = (await state.events({ nodeId: node.id })).filter((e) => e.facet === 'run' && e.kind === 'observed').map((e) => e.new);
    expect(runs).toEqual(['off', 'booting', 'ready', 'draining', 'drained', 'off']);
  });

  it('reprovisions: drain, arm the next image, reboot delivered as booting, the new boot says hello', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const state = t.appliance.state;
    await state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    await until(t.appliance, () => state.observed(node.id).run?.value === 'booting', 10_000, 'booting');
    const firstToken = await helloForToken(node.id, t.standIn.armedTokens.get(node.id)!, BOOT_A);
    await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'converged', 10_000, 'converged');

    await state.setDesired(node.id, { image: 'compute@2' }, 'test');
    // The old boot is asked to drain, then (after the next boot is armed with a new token) to reboot.
    let reply = '';
    for (let i = 0; i < 100 && !reply.includes('action=reboot'); i++) {
      const runState = state.observed(node.id).run?.value === 'ready' ? 'running' : 'drained';
      reply = (await t.post('/agent/v1/heartbeat', firstToken, beat(node.id, BOOT_A, runState))).text;
      if (reply.includes('action=drain')) await t.post('/agent/v1/drained', firstToken, beat(node.id, BOOT_A, 'drained'));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(reply).toBe('interval=1\naction=reboot\n');
    expect(state.observed(node.id).run?.value).toBe('booting');
    const secondBootstrap = t.standIn.armedTokens.get(node.id)!;
    const secondHello = await t.post('/agent/v1/hello', secondBootstrap, hello(node.id, BOOT_B, 'compute@2'));
    expect(secondHello.text).toMatch(/^interval=1\naction=none\ntoken=[A-Za-z0-9_-]{43}\n$/);
    expect(replyValue(secondHello.text, 'token')).not.toBe(firstToken);
    await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'converged', 10_000, 'converged on compute@2');
    expect(state.observed(node.id).image?.value).toBe('compute@2');
  });

  it('observes a silent node as lost after the deadline and ready again when it speaks', async () => {
    t = await startAgentAppliance({ agentOptions: { intervalSeconds: 1, lostAfterMs: 1_200 } });
    const node = await t.enroll('n1');
    const token = await helloForToken(node.id, arm(node.id), BOOT_A);
    await until(t.appliance, () => t!.appliance.state.observed(node.id).run?.value === 'lost', 10_000, 'lost');
    expect(t.appliance.state.observed(node.id).run?.detail).toMatch(/^no heartbeat for \d+ s$/);
    expect(t.agent.status(node.id)?.lost).toBe(true);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
    expect(t.appliance.state.observed(node.id).run?.value).toBe('ready');
  });

  it('forgets the tokens of a node removed from the inventory', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const token = await helloForToken(node.id, arm(node.id), BOOT_A);
    await t.appliance.state.removeNode(node.id, 'test');
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(401);
    expect(t.logs().filter((l) => l.msg === 'agent report refused').map((l) => l.reason)).toEqual(['unknown token']);
  });

  it('rejects options outside their ranges', async () => {
    const { createModule } = await import('./index.js');
    expect(() => createModule({ intervalSeconds: 0 })).toThrow();
    expect(() => createModule({ intervalSeconds: 10, lostAfterMs: 5_000 })).toThrow(/exceed/);
    expect(() => createModule({ interval: 10 })).toThrow();
  });
});
