// The OS recipe format at its edge: the shipped debian-12 recipe parses with its files read from
// beside it; bad recipes are refused with the field at fault; the cache key follows the content.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_MIRROR, loadOsRecipe, parseOsRecipe, RECIPES_DIR, RecipeError, shippedOsRecipes } from './os-recipe.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-recipe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'motd'), 'hello\n');

const minimal = (extra = '') => `name: tiny\nversion: "1"\ndescription: a test\nsuite: bookworm\npackages: [linux-image-amd64, systemd]\ncmdline: console=ttyS0\n${extra}`;
const parse = (text: string) => parseOsRecipe(text, join(dir, 'r.yaml'));
const refusal = (text: string) => {
  try {
    parse(text);
  } catch (error) {
    expect(error).toBeInstanceOf(RecipeError);
    return (error as Error).message;
  }
  throw new Error('accepted');
};

describe('OS recipes', () => {
  it('ships debian@12 with systemd, SSH, iproute2, cloud-init, a kernel and the agent as a systemd service', () => {
    const recipe = loadOsRecipe(join(RECIPES_DIR, 'debian-12.yaml'));
    expect(`${recipe.name}@${recipe.version}`).toBe('debian@12');
    expect(recipe.suite).toBe('bookworm');
    for (const p of ['systemd', 'openssh-server', 'iproute2', 'cloud-init', 'linux-image-amd64']) expect(recipe.packages).toContain(p);
    const agent = recipe.files.find((f) => f.path === '/usr/bin/shoal-agent')!;
    expect(agent.mode).toBe(0o755);
    expect(agent.data.toString()).toMatch(/^#!\/bin\/sh\n# shoal-agent/);
    const unit = recipe.files.find((f) => f.path === '/etc/systemd/system/shoal-agent.service')!.data.toString();
    expect(unit).toMatch(/^ExecStart=\/bin\/busybox sh \/usr\/bin\/shoal-agent$/m);
    expect(unit).toMatch(/^Restart=always$/m);
    expect(recipe.postInstall).toMatch(/systemctl enable shoal-agent\.service/);
    expect(shippedOsRecipes().map((r) => `${r.name}@${r.version}`)).toContain('debian@12');
  });

  it('fills in the defaults: Debian mirror, main, minbase, no files, no script', () => {
    const recipe = parse(minimal());
    expect(recipe).toMatchObject({ mirror: DEFAULT_MIRROR, components: ['main'], variant: 'minbase', files: [], postInstall: '' });
    expect(recipe.key).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reads a file beside the recipe, or inline content, with its mode', () => {
    const recipe = parse(minimal('files:\n  - { path: /etc/motd, source: motd }\n  - { path: /usr/local/bin/x, content: "#!/bin/sh\\n", mode: "0755" }\n'));
    expect(recipe.files).toEqual([
      { path: '/etc/motd', mode: 0o644, data: Buffer.from('hello\n') },
      { path: '/usr/local/bin/x', mode: 0o755, data: Buffer.from('#!/bin/sh\n') },
    ]);
  });

  it('refuses a recipe without a kernel package, naming the field', () => {
    expect(refusal(minimal().replace('[linux-image-amd64, systemd]', '[systemd]'))).toMatch(/packages: must include a kernel package/);
  });

  it('refuses bad names, suites, mirrors, packages, paths, modes and unknown fields, each by its field', () => {
    expect(refusal(minimal().replace('name: tiny', 'name: Tiny'))).toMatch(/name: /);
    expect(refusal(minimal('mirror: ftp://example.org/debian\n'))).toMatch(/mirror: /);
    expect(refusal(minimal().replace('systemd]', 'systemd, "bad name"]'))).toMatch(/packages\.2: a Debian package name/);
    expect(refusal(minimal().replace('systemd]', 'systemd, systemd]'))).toMatch(/packages: lists a package twice/);
    expect(refusal(minimal('files:\n  - { path: etc/motd, content: x }\n'))).toMatch(/files\.0\.path: an absolute path/);
    expect(refusal(minimal('files:\n  - { path: /etc/../motd, content: x }\n'))).toMatch(/files\.0\.path: a normalized path/);
    expect(refusal(minimal('files:\n  - { path: /etc/motd, content: x, mode: "999" }\n'))).toMatch(/files\.0\.mode: an octal mode/);
    expect(refusal(minimal('files:\n  - { path: /etc/motd, source: motd, content: x }\n'))).toMatch(/files\.0: exactly one of source and content/);
    expect(refusal(minimal('files:\n  - { path: /etc/motd, source: /etc/passwd }\n'))).toMatch(/files\.0\.source: relative to the recipe file/);
    expect(refusal(minimal('files:\n  - { path: /etc/motd, source: motd }\n  - { path: /etc/motd, content: x }\n'))).toMatch(/files: adds the same path twice/);
    expect(refusal(minimal('packagez: [x]\n'))).toMatch(/Unrecognized key.*packagez/);
    expect(refusal(minimal('files:\n  - { path: /etc/motd, source: no-such-file }\n'))).toMatch(/files\.0\.source: cannot read .*no-such-file: ENOENT/);
    expect(refusal('name: [unclosed')).toMatch(/not YAML/);
  });

  it('keys the root tree by content: a changed package, script or added file changes the key, the description does not', () => {
    const base = parse(minimal('files:\n  - { path: /etc/motd, source: motd }\n')).key;
    expect(parse(minimal('files:\n  - { path: /etc/motd, source: motd }\n').replace('a test', 'another text')).key).toBe(base);
    expect(parse(minimal('files:\n  - { path: /etc/motd, source: motd }\npostInstall: "true"\n')).key).not.toBe(base);
    expect(parse(minimal('files:\n  - { path: /etc/motd, source: motd }\n').replace('systemd]', 'systemd, ssh]')).key).not.toBe(base);
    writeFileSync(join(dir, 'motd'), 'changed\n');
    expect(parse(minimal('files:\n  - { path: /etc/motd, source: motd }\n')).key).not.toBe(base);
  });
});
