// A config file the appliance refuses names every problem, one per line, each by its field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadConfig', () => {
  it('lists each problem on its own line: the field path, or the message alone for the file as a whole', () => {
    const file = join(dir, 'shoal.yaml');
    writeFileSync(file, 'colour: red\napi:\n  port: 70000\nmodules:\n  - name: Sim\n');
    expect(() => loadConfig(file)).toThrow(
      `config ${file} is invalid:\n  api.port: Too big: expected number to be <=65535\n  modules.0.name: a module name is lowercase letters, digits and dashes\n  Unrecognized key: "colour"`,
    );
  });
});
