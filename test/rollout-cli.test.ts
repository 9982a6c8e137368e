// `shoal rollout …` against a running appliance, as an operator types it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runShoal } from './support/cli.js';
import { simSpecs, startTestAppliance, until, type TestAppliance } from './support/appliance.js';

let t: TestAppliance;

const shoal = (...args: string[]) => runShoal(t.appliance, args, 120_000);

beforeAll(async () => {
  t = await startTestAppliance({ sim: { latencies: { probeMs: 5, powerMs: 40, armMs: 5, bootStageMs: 40, drainMs: 20, lostAfterMs: 200 } } });
  const { state, engine } = t.appliance;
  const nodes = await state.addNodes(simSpecs(6, 'x').map((spec) => ({ spec: { ...spec, labels: { role: 'cli' } } })), 'test');
  for (const n of nodes) await state.setDesired(n.id, { power: 'on', image: 'compute@1' }, 'test');
  await until(t.appliance, () => nodes.every((n) => engine.executor.status(n.id).phase === 'converged'), 60_000, 'nodes on compute@1');
});
afterAll(async () => {
  await t.close();
});

describe('shoal rollout', { timeout: 120_000 }, () => {
  it('starts a rollout and shows each node until it is done; lists and shows it', async () => {
    const res = await shoal('rollout', 'start', '--selector', 'role=cli', '--max-unavailable', '2', 'image=compute@2');
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const lines = res.stdout.trim().split('\n');
    expect(lines[0]).toBe('rollout ro-1 started: image=compute@2 on 6 nodes (role=cli), at most 2 unavailable at a time');
    for (let i = 1; i <= 6; i++) {
      expect(res.stdout).toMatch(new RegExp(`x000${i}\\s+in-progress\\s+\\d/6 done`));
      expect(res.stdout).toMatch(new RegExp(`x000${i}\\s+done\\s+\\d/6 done`));
    }
    expect(lines.at(-1)).toBe('ro-1 done: 6 of 6 nodes on image=compute@2');

    const list = await shoal('rollout', 'list');
    expect(list.stdout).toMatch(/^ROLLOUT\s+STATUS\s+DONE\s+FAILED\s+MAX\s+CHANGE\s+SELECTOR/);
    expect(list.stdout).toMatch(/ro-1\s+done\s+6\/6\s+0\s+2\s+image=compute@2\s+role=cli/);
    const show = await shoal('rollout', 'show', 'ro-1');
    expect(show.stdout).toContain('ro-1: done — image=compute@2 on role=cli, at most 2 unavailable (maxUnavailable 2)');
    expect(show.stdout).toMatch(/done 6  in progress 0  pending 0  failed 0  of 6\n/);
    expect(show.stdout).toMatch(/x0006\s+done\s+converged/);
  });

  it('returns at once with --no-wait; pauses, resumes and cancels', async () => {
    // Frozen, nothing moves: the two nodes the rollout takes stay under way while we look.
    await t.appliance.state.setFrozen(null, true, 'test');
    try {
      const start = await shoal('rollout', 'start', '--selector', 'role=cli', '--max-unavailable', '34%', 'image=compute@3', '--no-wait');
      expect(start.code).toBe(0);
      expect(start.stdout.trim()).toBe('rollout ro-2 started: image=compute@3 on 6 nodes (role=cli), at most 2 unavailable at a time');
      expect((await shoal('rollout', 'pause', 'ro-2')).stdout).toMatch(/^ro-2: paused \(done 0\/6, in progress 2, failed 0\)/);
      expect((await shoal('rollout', 'show', 'ro-2')).stdout).toContain('done 0  in progress 2  pending 4  failed 0  of 6; unavailable now 2');
      expect((await shoal('rollout', 'resume', 'ro-2')).stdout).toMatch(/^ro-2: running/);
      expect((await shoal('rollout', 'cancel', 'ro-2')).stdout).toMatch(/^ro-2: cancelled \(done 0\/6, in progress 2, failed 0\)/);
      const again = await shoal('rollout', 'resume', 'ro-2');
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('Conflict: rollout ro-2 is cancelled; only a paused or failed rollout can be resumed');
    } finally {
      await t.appliance.state.setFrozen(null, false, 'test');
    }
  });

  it('explains what is wrong: usage (exit 2) and API refusals (exit 1)', async () => {
    const noSelector = await shoal('rollout', 'start', 'image=compute@2');
    expect(noSelector.code).toBe(2);
    expect(noSelector.stderr).toContain('rollout start needs --selector');
    const noChange = await shoal('rollout', 'start', '--selector', 'role=cli');
    expect(noChange.code).toBe(2);
    const empty = await shoal('rollout', 'start', '--selector', 'role=nothing', 'image=compute@2');
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('Nothing to roll out: the selector "role=nothing" matches no node');
    const badMax = await shoal('rollout', 'start', '--selector', 'role=cli', '--max-unavailable', '0', 'image=compute@2');
    expect(badMax.code).toBe(1);
    expect(badMax.stderr).toMatch(/Invalid request: .*maxUnavailable/);
    const missing = await shoal('rollout', 'show', 'ro-99');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('Not found: no rollout "ro-99"');
    expect((await shoal('rollout', 'frob')).code).toBe(2);
    expect((await shoal('--help')).stdout).toContain('rollout start --selector k=v,... [--max-unavailable N|P%] facet=value...');
  });
});
