// The `shoal` command against a running appliance, as an operator types it.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runShoal } from './support/cli.js';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';
import { createModule as createPxeModule } from '../modules/pxe/index.js';
import { createModule as createAgentModule } from '../modules/agent/index.js';

let t: TestAppliance;
let dir: string;

const shoal = (...args: string[]) => runShoal(t.appliance, args, 60_000);

beforeAll(async () => {
  t = await startTestAppliance({
    sim: { latencies: { probeMs: 50, powerMs: 1500, armMs: 50, bootStageMs: 800, drainMs: 20, lostAfterMs: 100 } },
    // Without DHCP or TFTP options it opens no socket: here for its discovered machines.
    // The agent module for its operator routes (kexec-clear); it claims no simulated node.
    modules: [createPxeModule({ advertiseUrl: 'http://127.0.0.1:1' }), createAgentModule({ intervalSeconds: 10, lostAfterMs: 45_000 })],
  });
  dir = mkdtempSync(join(tmpdir(), 'shoal-cli-'));
});
afterAll(async () => {
  await t.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('shoal CLI', { timeout: 60_000 }, () => {
  it('enrolls, lists and shows nodes', async () => {
    const add = await shoal('node', 'add', 'cli01', '--mac', '52:54:00:ee:ee:01', '--bmc', 'sim://cli01', '--label', 'rack=r9');
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(/^added cli01 \(/);
    const list = await shoal('node', 'list', '--selector', 'rack=r9');
    expect(list.stdout).toMatch(/^NODE\s+PHASE/);
    expect(list.stdout).toContain('cli01');
    const show = JSON.parse((await shoal('node', 'show', 'cli01', '--json')).stdout) as { labels: Record<string, string> };
    expect(show.labels).toEqual({ rack: 'r9' });
    const readable = (await shoal('node', 'show', 'cli01')).stdout;
    expect(readable).toMatch(/^cli01 {2}\w+/);
    expect(readable).toContain('  labels    rack=r9');
    expect(readable).toMatch(/^ {2}FACET +DESIRED +OBSERVED +SEEN$/m);
    expect(readable).toContain('hardware  not reported yet');
  });

  it('sets desired state and waits, showing each step until the node converges', async () => {
    const set = await shoal('node', 'set', 'cli01', 'power=on', 'image=compute@1', '--wait', '--timeout', '30');
    expect(set.code).toBe(0);
    expect(set.stdout).toContain('set power=on image=compute@1 on 1 node');
    expect(set.stdout).toMatch(/cli01\s+(power\.probe|boot\.arm|power\.on|run\.boot)/);
    expect(set.stdout).toContain('1 converged, 0 failed');
    const plan = await shoal('plan', 'cli01');
    expect(plan.stdout).toContain('cli01: converged');
    expect(plan.stdout).toContain('nothing to do');
  });

  it('reprovisions through kexec, --wait showing the step, and clears a node\'s kexec mark', async () => {
    const set = await shoal('node', 'set', 'cli01', 'image=compute@2', '--wait', '--timeout', '30');
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/cli01\s+run\.kexec/);
    expect(set.stdout).not.toContain('run.reboot');
    const graph = await t.api('GET', '/api/v1/graph');
    expect(graph.body.steps.find((s: { name: string }) => s.name === 'run.kexec').explain).toMatch(/kexec into them \(no firmware, no PXE\)/);
    const clear = await shoal('node', 'kexec-clear', 'cli01');
    expect(clear).toMatchObject({ code: 0, stdout: 'cli01 had no failed kexecs\n' });
    expect((await shoal('node', 'kexec-clear', 'no-such-node')).code).not.toBe(0);
  });

  it('installs to disk: plan explains the deploy, --wait follows it, and the disk is written with the image', async () => {
    expect((await shoal('node', 'add', 'cli05', '--mac', '52:54:00:ee:ee:05', '--bmc', 'sim://cli05')).code).toBe(0);
    const set = await shoal('node', 'set', 'cli05', 'power=on', 'boot=disk', 'image=compute@1', '--wait', '--timeout', '30');
    expect(set.code, set.stdout + set.stderr).toBe(0);
    // The write takes a simulated boot stage (800 ms), longer than --wait's poll: it always shows, with its progress.
    expect(set.stdout).toMatch(/cli05\s+disk\.write: writing/);
    expect(set.stdout).toContain('1 converged, 0 failed');
    const node = ((await t.api('GET', '/api/v1/nodes/cli05')).body as { id: string }).id;
    await t.appliance.state.flush();
    const boots = (await t.appliance.state.events({ nodeId: node })).filter((e) => e.facet === 'boot' && e.kind === 'observed').map((e) => e.new);
    expect(boots).toEqual(['deploy', 'deploy', 'deploy', 'deployed', 'disk']);
    const show = JSON.parse((await shoal('node', 'show', 'cli05', '--json')).stdout) as { observed: Record<string, { value: string; detail?: string }> };
    expect(show.observed.disk).toMatchObject({ value: 'written' });
    expect(show.observed.disk!.detail).toMatch(/^compute@1 sha256:[0-9a-f]{64} on sda$/);
    expect(show.observed.image?.value).toBe('compute@1');
    // Another image, the node frozen so nothing runs: the plan says how it gets there.
    expect((await shoal('freeze', 'cli05')).code).toBe(0);
    expect((await shoal('node', 'set', 'cli05', 'image=compute@2')).code).toBe(0);
    const plan = (await shoal('plan', 'cli05')).stdout;
    expect(plan).toMatch(/1\. boot\.deploy[\s\S]*2\. run\.drain[\s\S]*3\. run\.reboot[\s\S]*4\. run\.boot[\s\S]*5\. disk\.write[\s\S]*6\. boot\.disk[\s\S]*9\. run\.boot/);
    expect(plan).toContain('stream the desired image onto the disk the root-device hint picks');
    expect((await shoal('thaw', 'cli05')).code).toBe(0);
  });

  it('imports an inventory file and exports it back; a bad file reports the line and exits non-zero', async () => {
    const good = join(dir, 'rack.yaml');
    writeFileSync(good, 'nodes:\n  - name: cli02\n    macs: ["52:54:00:ee:ee:02"]\n    bmc: sim://cli02\n');
    expect((await shoal('import', good)).stdout).toContain('imported 1 nodes');
    expect((await shoal('export')).stdout).toContain('name: cli02');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'nodes:\n  - name: cli03\n    macs: ["52:54:00:ee:ee:03"]\n    bmc: ftp://x\n');
    const res = await shoal('import', bad);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/line 2: BMC scheme "ftp" is not supported/);
  });

  it('explains usage errors (exit 2) and API errors (exit 1)', async () => {
    const usage = await shoal('node', 'set', 'cli01', 'power=sideways');
    expect(usage.code).not.toBe(0);
    expect(usage.stderr).toMatch(/power/);
    const unknown = await shoal('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const missing = await shoal('plan', 'nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no node named or with id "nope"');
  });

  it('lists machines that network-booted unknown, enrolls one as a node and forgets another', async () => {
    // Fetching a boot script is how a machine unknown to the inventory is first seen without DHCP.
    for (const mac of ['52:54:00:dd:00:01', '52:54:00:dd:00:02']) await fetch(`${t.appliance.url}/boot/${mac}.ipxe`);
    const list = await shoal('discovered', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^MAC\s+FIRMWARE\s+ADDRESS/);
    expect(list.stdout).toContain('52:54:00:dd:00:01');

    const enroll = await shoal('discovered', 'enroll', '52-54-00-DD-00-01', 'found01', '--bmc', 'sim://found01', '--label', 'rack=r7');
    expect(enroll.stderr).toBe('');
    expect(enroll.stdout).toMatch(/^enrolled 52:54:00:dd:00:01 as found01 \(/);
    expect((await t.api('GET', '/api/v1/nodes/found01')).body).toMatchObject({ macs: ['52:54:00:dd:00:01'], labels: { rack: 'r7' } });

    expect((await shoal('discovered', 'rm', '52:54:00:dd:00:02')).code).toBe(0);
    const after = await shoal('discovered', 'list');
    expect(after.stdout).not.toContain('52:54:00:dd:00:0');
    expect(after.stdout).toContain('(none');

    const unknown = await shoal('discovered', 'enroll', '52:54:00:dd:00:09', 'nope', '--bmc', 'sim://nope');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('52:54:00:dd:00:09 is not a discovered machine');
    const gone = await shoal('discovered', 'rm', '52:54:00:dd:00:02');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('not a discovered machine');
  });

  it('enrolls a discovered MAC however it was pasted: dashes, capitals, blanks around it', async () => {
    await fetch(`${t.appliance.url}/boot/52:54:00:dd:00:03.ipxe`);
    const enroll = await shoal('discovered', 'enroll', ' 52-54-00-DD-00-03\t', 'found03', '--bmc', 'sim://found03');
    expect(enroll.stderr).toBe('');
    expect(enroll.stdout).toMatch(/^enrolled 52:54:00:dd:00:03 as found03 \(/);
  });

  it('prints the event log', async () => {
    const events = await shoal('events', '--node', 'cli01');
    expect(events.stdout).toMatch(/desired\s+\S+ power ∅ → on by operator:admin/);
    expect(events.stdout).toMatch(/observed .* run booting → ready by sim/);
  });

  it('names the node of each event, a removed one too, as operators do', async () => {
    await shoal('node', 'add', 'gone01', '--mac', '52:54:00:ee:ee:09', '--bmc', 'sim://gone01');
    await shoal('node', 'set', 'gone01', 'image=compute@1');
    await shoal('node', 'rm', 'gone01');
    const { stdout } = await shoal('events');
    expect(stdout).toMatch(/ node +gone01 spec ∅ → \{/);
    expect(stdout).toMatch(/ desired +gone01 image ∅ → compute@1 by operator:admin/);
    expect(stdout).toMatch(/ desired +cli01 power ∅ → on by operator:admin/);
    expect(stdout).not.toContain(t.appliance.state.resolve('cli01').id.slice(0, 8));
  });

  it('stops quietly when the reader of its output goes away (shoal node list | head -1)', async () => {
    // The reader is gone before the first line is written: every write then fails with EPIPE.
    const child = spawn(process.execPath, ['bin/shoal.js', 'node', 'list'], {
      cwd: join(import.meta.dirname, '..'),
      env: { ...process.env, SHOAL_URL: t.appliance.url, SHOAL_TOKEN: t.appliance.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
    expect(stderr).toBe('');
    expect({ code, signal }).toEqual({ code: 0, signal: null });
  });
});
