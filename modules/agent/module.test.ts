// The agent module in a real Appliance, spoken to over HTTP exactly as PROTOCOL.md's agent speaks:
// tokens and their binding to one boot, refusals and their logs, the run and image observations,
// drain and reboot delivered through the engine, lost on silence, and a restart that keeps agents.
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/appliance.js';
import type { NodeId } from '../../src/domain/node.js';
import { DIGESTS, startAgentAppliance, type AgentTestAppliance } from '../../test/support/agent-appliance.js';

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

  const issue = (id: NodeId, ref = 'compute@1') => t!.standIn.bootTokens().issue(id, ref);

  it('accepts a hello: run ready, image observed with its digest, replies interval and action', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const token = issue(node.id);
    const res = await t.post('/agent/v1/hello', token, hello(node.id, BOOT_A));
    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^text\/plain/);
    expect(res.text).toBe('interval=1\naction=none\n');
    expect(t.appliance.state.observed(node.id).run?.value).toBe('ready');
    expect(t.appliance.state.observed(node.id).image).toMatchObject({ value: 'compute@1', detail: DIGESTS['compute@1'] });

    // Idempotent per boot: a repeated hello (lost reply) is answered like the first.
    expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_A))).status).toBe(200);
    const beatRes = await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A));
    expect(beatRes.status).toBe(200);
    expect(beatRes.text).toBe('interval=1\naction=none\n');
    expect(t.agent.status(node.id)).toMatchObject({ reports: 3, lost: false, action: 'none' });
    const listed = await fetch(`${t.appliance.url}/api/v1/agents`, { headers: { authorization: `Bearer ${t.appliance.token}` } });
    expect(await listed.json()).toMatchObject({ agents: [{ node: node.id, reports: 3, lost: false, action: 'none' }] });
    expect((await fetch(`${t.appliance.url}/api/v1/agents`)).status).toBe(401);
  });

  it('answers 409 to a heartbeat before any hello, and 400 to a bad body without changing anything', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const token = issue(node.id);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(409);
    expect((await t.post('/agent/v1/hello', token, { ...hello(node.id, BOOT_A), bootId: 'NOT-HEX' })).status).toBe(400);
    expect((await t.post('/agent/v1/hello', token, '{"node":')).status).toBe(400);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A, 'sleeping'))).status).toBe(400);
    expect(t.appliance.state.observed(node.id).run).toBeUndefined();
    // The token was not bound by the rejected hello: any boot may still be the first.
    expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_B))).status).toBe(200);
    const refusals = t.logs().filter((l) => l.msg === 'agent report refused');
    expect(refusals.map((l) => [l.status, l.reason])).toEqual([
      [409, 'report before hello'],
      [400, 'invalid body'],
      [400, 'unreadable body'],
      [400, 'invalid body'],
    ]);
  });

  it('refuses a missing token, a token of another node, and another boot with a bound token, logging each without the token', async () => {
    t = await startAgentAppliance();
    const n1 = await t.enroll('n1');
    const n2 = await t.enroll('n2');
    const token1 = issue(n1.id);
    const token2 = issue(n2.id);
    expect((await t.post('/agent/v1/hello', undefined, hello(n1.id, BOOT_A))).status).toBe(401);
    expect((await t.post('/agent/v1/hello', token2, hello(n1.id, BOOT_A))).status).toBe(401);
    expect((await t.post('/agent/v1/hello', token1, hello(n1.id, BOOT_A))).status).toBe(200);
    expect((await t.post('/agent/v1/hello', token1, hello(n1.id, BOOT_B))).status).toBe(401);
    expect((await t.post('/agent/v1/heartbeat', token1, beat(n1.id, BOOT_B))).status).toBe(401);
    expect(t.appliance.state.observed(n2.id).run).toBeUndefined();

    const refusals = t.logs().filter((l) => l.msg === 'agent report refused');
    expect(refusals.map((l) => [l.status, l.reason])).toEqual([
      [401, 'no bearer token'],
      [401, 'token of another node'],
      [401, 'token bound to another boot'],
      [401, 'token bound to another boot'],
    ]);
    expect(refusals[1]).toMatchObject({ node: n2.id, claimedNode: n1.id });
    expect(t.logText()).not.toContain(token1);
    expect(t.logText()).not.toContain(token2);
  });

  it('a newer token retires the older for new boots; the running boot keeps its token until the new boot says hello', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const first = issue(node.id);
    expect((await t.post('/agent/v1/hello', first, hello(node.id, BOOT_A))).status).toBe(200);

    const unused = issue(node.id, 'compute@2');
    const second = issue(node.id, 'compute@2');
    // The unused token never started a boot: stale at once.
    expect((await t.post('/agent/v1/hello', unused, hello(node.id, BOOT_B, 'compute@2'))).status).toBe(401);
    // The running boot is still heard (it must be, to be asked to drain and reboot).
    expect((await t.post('/agent/v1/heartbeat', first, beat(node.id, BOOT_A))).status).toBe(200);
    expect((await t.post('/agent/v1/hello', first, hello(node.id, BOOT_B))).status).toBe(401);

    expect((await t.post('/agent/v1/hello', second, hello(node.id, BOOT_B, 'compute@2'))).status).toBe(200);
    expect(t.appliance.state.observed(node.id).image).toMatchObject({ value: 'compute@2', detail: DIGESTS['compute@2'] });
    // Once the new boot is up, the old one is stale.
    expect((await t.post('/agent/v1/heartbeat', first, beat(node.id, BOOT_A))).status).toBe(401);

    const refusals = t.logs().filter((l) => l.msg === 'agent report refused');
    expect(refusals.map((l) => l.reason)).toEqual(['superseded token', 'token bound to another boot', 'superseded token']);
    expect(refusals[0]).toMatchObject({ node: node.id, status: 401 });
    for (const token of [first, unused, second]) expect(t.logText()).not.toContain(token);
  });

  it('keeps bound agents accepted across an appliance restart', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const token = issue(node.id);
    expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_A))).status).toBe(200);
    const dataDir = t.dataDir;
    await t.stop();
    t = await startAgentAppliance({ dataDir });
    try {
      expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
      expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_B))).status).toBe(401);
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
    const token = t.standIn.armedTokens.get(node.id)!;
    expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_A))).status).toBe(200);
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
    const firstToken = t.standIn.armedTokens.get(node.id)!;
    await t.post('/agent/v1/hello', firstToken, hello(node.id, BOOT_A));
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
    const secondToken = t.standIn.armedTokens.get(node.id)!;
    expect(secondToken).not.toBe(firstToken);

    expect((await t.post('/agent/v1/hello', secondToken, hello(node.id, BOOT_B, 'compute@2'))).text).toBe('interval=1\naction=none\n');
    await until(t.appliance, () => t!.appliance.engine.executor.status(node.id).phase === 'converged', 10_000, 'converged on compute@2');
    expect(state.observed(node.id).image?.value).toBe('compute@2');
  });

  it('observes a silent node as lost after the deadline and ready again when it speaks', async () => {
    t = await startAgentAppliance({ agentOptions: { intervalSeconds: 1, lostAfterMs: 1_200 } });
    const node = await t.enroll('n1');
    const token = issue(node.id);
    await t.post('/agent/v1/hello', token, hello(node.id, BOOT_A));
    await until(t.appliance, () => t!.appliance.state.observed(node.id).run?.value === 'lost', 10_000, 'lost');
    expect(t.appliance.state.observed(node.id).run?.detail).toMatch(/^no heartbeat for \d+ s$/);
    expect(t.agent.status(node.id)?.lost).toBe(true);
    expect((await t.post('/agent/v1/heartbeat', token, beat(node.id, BOOT_A))).status).toBe(200);
    expect(t.appliance.state.observed(node.id).run?.value).toBe('ready');
  });

  it('forgets the tokens of a node removed from the inventory', async () => {
    t = await startAgentAppliance();
    const node = await t.enroll('n1');
    const token = issue(node.id);
    expect((await t.post('/agent/v1/hello', token, hello(node.id, BOOT_A))).status).toBe(200);
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
