// `shoal user add|list|rm` against a running appliance, as an admin types them: the token printed
// once and usable at once with the role asked for, the list without tokens, a removed user locked out.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runShoal } from './support/cli.js';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';

let t: TestAppliance;
const shoal = (...args: string[]) => runShoal(t.appliance, args, 60_000);

beforeAll(async () => {
  t = await startTestAppliance({});
});
afterAll(async () => t?.close());

describe('shoal user', { timeout: 120_000 }, () => {
  it('adds a user and prints its token once; the token works with its role and names it in events', async () => {
    const add = await shoal('user', 'add', 'alice', '--role', 'operator');
    expect(add.code).toBe(0);
    const token = add.stdout.trim().split('\n').at(-1)!;
    expect(add.stdout).toMatch(/^added user alice \(operator\)/);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const enrolled = await shoal('node', 'add', 'uc01', '--mac', '52:54:00:ce:00:01', '--bmc', 'sim://uc01', '--token', token);
    expect(enrolled.code).toBe(0);
    const events = await shoal('events', '--node', 'uc01');
    expect(events.stdout).toMatch(/ node +uc01 spec .* by operator:alice/);

    const list = await shoal('user', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^USER\s+ROLE\s+CREATED \(UTC\)\s+BY/);
    expect(list.stdout).toMatch(/\nadmin\s+admin\s+\S+ \S+\s+appliance/);
    expect(list.stdout).toMatch(/\nalice\s+operator\s+\S+ \S+\s+operator:admin/);
    expect(list.stdout).not.toContain(token);
  });

  it('a viewer\'s token can neither manage users nor write: exit 1, naming the role needed', async () => {
    const { stdout } = await shoal('user', 'add', 'bob', '--role', 'viewer');
    const bob = stdout.trim().split('\n').at(-1)!;
    const refused = await shoal('user', 'list', '--token', bob);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('needs role admin; user bob has role viewer');
    const write = await shoal('freeze', '--token', bob);
    expect(write.code).toBe(1);
    expect(write.stderr).toContain('needs role operator; user bob has role viewer');
  });

  it('removes a user, whose token is refused from then on', async () => {
    const { stdout } = await shoal('user', 'add', 'carol', '--role', 'viewer');
    const carol = stdout.trim().split('\n').at(-1)!;
    const rm = await shoal('user', 'rm', 'carol');
    expect(rm.code).toBe(0);
    expect(rm.stdout).toContain('removed user carol');
    const refused = await shoal('node', 'list', '--token', carol);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('Unauthorized');
    expect((await shoal('user', 'list')).stdout).not.toMatch(/\ncarol\s/);
  });

  it('explains what it needs: a role it knows, a name', async () => {
    const noRole = await shoal('user', 'add', 'dave');
    expect(noRole.code).toBe(2);
    expect(noRole.stderr).toContain('user add needs --role viewer|operator|admin');
    const badRole = await shoal('user', 'add', 'dave', '--role', 'root');
    expect(badRole.code).toBe(2);
    expect(badRole.stderr).toContain('"root" is not a role: viewer, operator or admin');
    const noName = await shoal('user', 'rm');
    expect(noName.code).toBe(2);
    const unknown = await shoal('user', 'rm', 'nobody');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no user named "nobody"');
  });
});
