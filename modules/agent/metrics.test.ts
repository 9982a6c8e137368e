// The agent module's counters at /metrics after agents spoke to it over HTTP: requests accepted
// and refused by route and reason, the actions their replies carried, and a node gone silent.
// Protocol 2: the token in the body, the armed boot's bootstrap spent by the hello for the boot
// token its reply carries, which the later requests use.
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/appliance.js';
import { replyValue, startAgentAppliance, type AgentTestAppliance } from '../../test/support/agent-appliance.js';

const BOOT = '11111111-1111-4111-8111-111111111111';

describe('agent module metrics', () => {
  let t: AgentTestAppliance | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('serves its request, action and lost counters at /metrics', async () => {
    t = await startAgentAppliance({ agentOptions: { intervalSeconds: 1, lostAfterMs: 1_200 } });
    const node = await t.enroll('n1');
    const bootstrap = t.standIn.arm(node.id, 'compute@1');
    const hello = { node: node.id, bootId: BOOT, image: 'compute@1', bakedImage: 'compute@1', kernel: '6.1.0-test', uptime: 7.6, interfaces: [] };
    const beat = (state: string) => ({ node: node.id, bootId: BOOT, uptime: 9.1, state });

    expect((await t.post('/agent/v1/hello', undefined, hello)).status).toBe(401);
    expect((await t.post('/agent/v1/hello', 'not-a-token', hello)).status).toBe(401);
    expect((await t.post('/agent/v1/heartbeat', bootstrap, beat('running'))).status).toBe(409);
    expect((await t.post('/agent/v1/heartbeat', undefined, '{"node":')).status).toBe(400);
    const helloReply = await t.post('/agent/v1/hello', bootstrap, hello);
    expect(helloReply.status).toBe(200);
    const token = replyValue(helloReply.text, 'token')!;
    expect(token).toBeTruthy();
    expect((await t.post('/agent/v1/heartbeat', token, beat('running'))).status).toBe(200);

    // The engine's drain step, run by hand: the next two replies carry it, the drained report ends it.
    const drain = new AbortController();
    await t.appliance.engine.driverFor(node, 'run')!.steps['run.drain']!({ step: 'run.drain', node, desired: {}, bmcPassword: undefined, signal: drain.signal });
    expect((await t.post('/agent/v1/heartbeat', token, beat('running'))).text).toContain('action=drain');
    expect((await t.post('/agent/v1/heartbeat', token, beat('draining'))).text).toContain('action=drain');
    expect((await t.post('/agent/v1/drained', token, beat('drained'))).text).toContain('action=none');
    drain.abort();

    await until(t.appliance, () => t!.appliance.state.observed(node.id).run?.value === 'lost', 10_000, 'lost');
    const metrics = await fetch(`${t.appliance.url}/metrics`, { headers: { authorization: `Bearer ${t.appliance.token}` } });
    expect(metrics.status).toBe(200);
    expect((await metrics.text()).split('\n')).toEqual(
      expect.arrayContaining([
        'shoal_agent_requests_total{route="hello",outcome="no-token"} 1',
        'shoal_agent_requests_total{route="hello",outcome="unknown-token"} 1',
        'shoal_agent_requests_total{route="heartbeat",outcome="report-before-hello"} 1',
        'shoal_agent_requests_total{route="heartbeat",outcome="unreadable-body"} 1',
        'shoal_agent_requests_total{route="hello",outcome="accepted"} 1',
        'shoal_agent_requests_total{route="heartbeat",outcome="accepted"} 3',
        'shoal_agent_requests_total{route="drained",outcome="accepted"} 1',
        'shoal_agent_actions_sent_total{action="drain"} 2',
        'shoal_agent_lost_total 1',
      ]),
    );
  });
});
