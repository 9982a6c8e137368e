// `shoal profile add|list|show|set|rm` and `shoal node config` against a running appliance, with the
// profile written as an operator would: a YAML file giving a rack its names, keys and files.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runShoal } from './support/cli.js';
import { startTestAppliance, type TestAppliance } from './support/appliance.js';

let t: TestAppliance;
let dir: string;
const shoal = (...args: string[]) => runShoal(t.appliance, args, 60_000);
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

beforeAll(async () => {
  t = await startTestAppliance({});
  dir = mkdtempSync(join(tmpdir(), 'shoal-profile-cli-'));
  for (const [name, mac, rack] of [['c01', '52:54:00:cf:00:01', 'r1'], ['c02', '52:54:00:cf:00:02', 'r2']] as const) {
    expect((await t.api('POST', '/api/v1/nodes', { name, macs: [mac], bmc: `sim://${name}`, labels: { role: 'compute', rack } })).status).toBe(201);
  }
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

const PROFILE = `selector: role=compute
settings:
  hostname: "{{ name }}.lab"
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3Nza ops@site"]
  files:
    - path: /etc/shoal-test.conf
      mode: "0640"
      content: |
        rack={{ labels.rack }}
`;

describe('shoal profile', { timeout: 120_000 }, () => {
  it('adds a profile from YAML and says which nodes it reaches; add again is refused', async () => {
    const add = await shoal('profile', 'add', 'compute', file('compute.yaml', PROFILE));
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    expect(add.stdout).toBe('added profile compute; it reaches 2 nodes: c01, c02\n');
    const again = await shoal('profile', 'add', 'compute', file('compute.yaml', PROFILE));
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('profile compute already exists');
  });

  it('lists and shows profiles', async () => {
    const list = await shoal('profile', 'list');
    expect(list.stdout).toMatch(/^PROFILE\s+PRIORITY\s+SELECTOR\s+NODES\s+REACHES\s+SETS\n/);
    expect(list.stdout).toMatch(/\ncompute\s+0\s+role=compute\s+-\s+2\s+hostname,sshAuthorizedKeys,files\n/);
    const show = await shoal('profile', 'show', 'compute');
    expect(show.stdout).toContain('reaches:\n  - c01\n  - c02\n');
  });

  it('prints a node\'s configuration with who set each value, and replaces its overrides from a file', async () => {
    const shown = await shoal('node', 'config', 'c01');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^node c01: profiles compute, then its own overrides; digest [0-9a-f]{16}\n/);
    expect(shown.stdout).toMatch(/\nhostname\s+\{\{ name \}\}\.lab\s+profile:compute\n/);
    expect(shown.stdout).toMatch(/\nfiles:\/etc\/shoal-test\.conf\s+0640 rack=\{\{ labels\.rack \}\}…\s+profile:compute\n/);
    const set = await shoal('node', 'config', 'c01', file('c01.yaml', 'hostname: login-{{ name }}\n'));
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/\nhostname\s+login-\{\{ name \}\}\s+node\n/);
  });

  it('refuses a profile whose template does not render, with the file and the line, and keeps the old one', async () => {
    const broken = PROFILE.replace('rack={{ labels.rack }}', 'rack={{ labels.rack }}\n        row={{ labels.row }}');
    const set = await shoal('profile', 'set', 'compute', file('broken.yaml', broken));
    expect(set.code).toBe(1);
    expect(set.stderr).toContain('profile compute, file /etc/shoal-test.conf, line 2: undefined variable: labels.row');
    expect((await shoal('profile', 'show', 'compute')).stdout).not.toContain('row=');
  });

  it('removes a profile', async () => {
    const rm = await shoal('profile', 'rm', 'compute');
    expect(rm.stdout).toBe('removed profile compute\n');
    expect((await shoal('profile', 'list')).stdout).not.toContain('compute');
  });
});
