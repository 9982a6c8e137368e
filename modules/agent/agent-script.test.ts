// The real node agent (images/agent/shoal-agent.sh under busybox sh, on this host with a fake
// kernel command line and boot id) against a real Appliance running the agent module. The
// stand-in module arms boots with bootstrap tokens as the pxe module does, and its power-off
// kills the agent as cutting a node's power would. SHOAL_POWER_CMD keeps a reboot action off the
// host. Each agent's directory stands for its node's /run: an agent started again in the same
// one is the same boot's agent restarted.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { until } from '../../test/support/appliance.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { DIGESTS, startAgentAppliance, type AgentTestAppliance } from '../../test/support/agent-appliance.js';

const AGENT = new URL('../../images/agent/shoal-agent.sh', import.meta.url).pathname;
const skip = skipUnless('agent module with the real agent', requirements({ commands: ['busybox'] }));

class AgentProcess {
  stderr = '';
  exited = false;
  readonly child: ChildProcess;

  constructor(readonly dir: string, url: string, node: string, token: string, bootId: string, bakedImage: string) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'cmdline'), `BOOT_IMAGE=vmlinuz shoal.url=${url}/ shoal.node=${node} shoal.token=${token} shoal.image=${bakedImage} quiet\n`);
    writeFileSync(join(dir, 'boot_id'), `${bootId}\n`);
    writeFileSync(join(dir, 'shoal-image'), `image=${bakedImage}\n`);
    writeFileSync(join(dir, 'power'), `#!/bin/sh\necho "$1" >> ${join(dir, 'power.log')}\nexit 1\n`);
    chmodSync(join(dir, 'power'), 0o755);
    this.child = spawn('busybox', ['sh', AGENT], {
      env: {
        PATH: process.env.PATH,
        SHOAL_CMDLINE: join(dir, 'cmdline'),
        SHOAL_BOOT_ID: join(dir, 'boot_id'),
        SHOAL_IMAGE_FILE: join(dir, 'shoal-image'),
        SHOAL_WORK_DIR: join(dir, 'work'),
        SHOAL_POWER_CMD: join(dir, 'power'),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true, // its own process group, so kill() reaches the workload and any wget too
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')));
    this.child.on('exit', () => (this.exited = true));
  }

  /** The boot token the agent keeps, as root reads it on the node. */
  get tokenFile(): string {
    return join(this.dir, 'work', 'token');
  }

  kill(): void {
    if (this.exited) return;
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

const BOOT_A = '0a0a0a0a-0000-4000-8000-00000000000a';
const BOOT_B = '0b0b0b0b-0000-4000-8000-00000000000b';
const BOOT_C = '0c0c0c0c-0000-4000-8000-00000000000c';

describe.skipIf(skip)('the agent module with the real shoal-agent.sh', { timeout: 120_000 }, () => {
  let t: AgentTestAppliance;
  let dir: string;
  let node: NodeRecord;
  const agents: AgentProcess[] = [];

  const startAgent = (name: string, token: string, bootId: string, image = 'compute@1') => {
    const agent = new AgentProcess(join(dir, name), t.appliance.url, node.id, token, bootId, image);
    agents.push(agent);
    return agent;
  };
  const runEvents = async () => {
    await t.appliance.state.flush();
    return (await t.appliance.state.events({ nodeId: node.id })).filter((e) => e.facet === 'run' && e.kind === 'observed').map((e) => e.new);
  };
  const observed = () => t.appliance.state.observed(node.id);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-agent-script-'));
    // A 1 s interval; 4 s of silence is lost (generous: the test machine is shared and busy).
    t = await startAgentAppliance({ agentOptions: { intervalSeconds: 1, lostAfterMs: 4_000 } });
    node = await t.enroll('n1');
  });

  afterAll(async () => {
    agents.forEach((a) => a.kill());
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('boots: the bootstrap\'s hello makes run ready with the image and its digest, and heartbeats with the boot token keep it', async () => {
    await t.appliance.state.setDesired(node.id, { power: 'on', image: 'compute@1' }, 'test');
    await until(t.appliance, () => observed().run?.value === 'booting', 20_000, 'power on, booting');
    const bootstrap = t.standIn.armedTokens.get(node.id)!;
    const agent = startAgent('boot-a', bootstrap, BOOT_A);
    await until(t.appliance, () => t.appliance.engine.executor.status(node.id).phase === 'converged', 20_000, 'converged');
    expect(observed().run?.value).toBe('ready');
    expect(observed().image).toMatchObject({ value: 'compute@1', detail: DIGESTS['compute@1'] });

    // The boot token is in a root-only file, not on the command line and not in the agent's environment.
    // Converged on the hello; the heartbeat that follows it at once comes after the file is written.
    await until(t.appliance, () => t.agent.status(node.id)!.reports >= 2, 20_000, 'the heartbeat confirming the boot token');
    const token = readFileSync(agent.tokenFile, 'utf8').trim();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(agent.tokenFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(agent.dir, 'cmdline'), 'utf8')).not.toContain(token);
    expect(readFileSync(`/proc/${agent.child.pid}/environ`, 'utf8')).not.toContain(token);
    expect(readFileSync(`/proc/${agent.child.pid}/cmdline`, 'utf8')).not.toContain(token);
    expect(t.logText()).not.toContain(token);
    expect(t.logText()).not.toContain(bootstrap);

    const reports = t.agent.status(node.id)!.reports;
    await until(t.appliance, () => t.agent.status(node.id)!.reports >= reports + 3, 20_000, 'three more heartbeats');
    expect(observed().run?.value).toBe('ready');
    expect(await runEvents()).toEqual(['off', 'booting', 'ready']);
  });

  it('refuses the spent bootstrap, read from the command line by someone else, and records it naming the node', async () => {
    const impostor = startAgent('impostor', t.standIn.armedTokens.get(node.id)!, BOOT_B);
    await until(t.appliance, () => impostor.stderr.includes('HTTP 401'), 20_000, 'the impostor refused');
    impostor.kill();
    expect(impostor.stderr).toContain('bootstrap token as invalid, stale or spent');
    const refusal = t.logs().find((l) => l.msg === 'agent report refused' && l.reason === 'bootstrap token already spent');
    expect(refusal).toMatchObject({ node: node.id, status: 401, path: '/agent/v1/hello', bootId: BOOT_B, spentBy: BOOT_A });
    await t.appliance.state.flush();
    const recorded = (await t.appliance.state.events({ nodeId: node.id })).filter((e) => e.facet === 'boot-token');
    expect(recorded.map((e) => e.new)).toEqual(['replayed']);
    expect(recorded[0]!.detail).toMatch(/^node n1: .*boot 0b0b0b0b-.*may have been stolen/);
    // The running boot is untouched.
    expect(observed().run?.value).toBe('ready');
  });

  it('refuses and logs a superseded token', async () => {
    const stale = t.standIn.bootTokens().issue(node.id, 'compute@1');
    t.standIn.bootTokens().issue(node.id, 'compute@1');
    const impostor = startAgent('stale', stale, BOOT_B);
    await until(t.appliance, () => impostor.stderr.includes('HTTP 401'), 20_000, 'the stale agent refused');
    impostor.kill();
    const refusal = t.logs().find((l) => l.msg === 'agent report refused' && l.reason === 'superseded token');
    expect(refusal).toMatchObject({ node: node.id, status: 401, path: '/agent/v1/hello' });
    expect(t.logText()).not.toContain(stale);
    // The running boot is untouched.
    expect(observed().run?.value).toBe('ready');
  });

  it('drains through the engine before power goes off', async () => {
    const [running] = agents;
    t.standIn.onPowerOff = () => running!.kill();
    await t.appliance.state.setDesired(node.id, { power: 'off', image: null }, 'test');
    await until(t.appliance, () => observed().power?.value === 'off' && t.appliance.engine.executor.status(node.id).phase === 'converged', 30_000, 'drained and off');
    // Power goes as soon as the drained report is accepted, before the agent may log it.
    expect(running!.stderr).toContain('draining: stopping the workload');
    expect(await runEvents()).toEqual(['off', 'booting', 'ready', 'draining', 'drained', 'off']);
  });

  it('observes a killed agent as lost, and ready again when it comes back with the same boot', async () => {
    // Power only: with run=ready desired the engine would power-cycle the lost node at once (its
    // recovery path), and this test is about the agent coming back by itself.
    await t.appliance.state.setDesired(node.id, { power: 'on' }, 'test');
    await until(t.appliance, () => observed().run?.value === 'booting', 20_000, 'booting again');
    const bootstrap = t.standIn.arm(node.id);
    const agent = startAgent('boot-c', bootstrap, BOOT_C);
    await until(t.appliance, () => observed().run?.value === 'ready', 20_000, 'ready');
    agent.kill();
    await until(t.appliance, () => observed().run?.value === 'lost', 20_000, 'lost');
    expect(observed().run?.detail).toMatch(/^no heartbeat for \d+ s$/);
    // Restarted on the same boot, it says hello with the boot token from its file.
    startAgent('boot-c', bootstrap, BOOT_C);
    await until(t.appliance, () => observed().run?.value === 'ready', 20_000, 'ready again');
    expect((await runEvents()).slice(-4)).toEqual(['booting', 'ready', 'lost', 'ready']);
  });
});
