// The release bundle compiles every non-test file under src/ and modules/ (tsconfig.build.json), so
// a fixture left there ships to head nodes. Each of those files has to be reached from what the
// appliance runs: the CLI, each module's index.ts (loaded by name) and files loaded by URL.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const walk = (dir: string): string[] => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)]));
// A directory loaded by URL (images/os-recipe.ts's recipes/) holds data, not code to follow.
const sourceOf = (file: string) => [file.replace(/\.js$/, '.ts'), file.replace(/\.js$/, '.tsx'), file].find((f) => existsSync(f) && statSync(f).isFile());

/** Relative imports, dynamic imports and `new URL('./x', import.meta.url)` loads of one file. */
function referencesOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const targets = [...text.matchAll(/(?:from|import\s*\(|new URL\()\s*'(\.{1,2}\/[^'`$]+)'/g)].map((m) => sourceOf(resolve(dirname(file), m[1]!)));
  return targets.filter((t): t is string => t !== undefined);
}

describe('the shipped tree', () => {
  it('holds no file only tests use', () => {
    const shipped = ['src', 'modules'].flatMap((d) => walk(join(ROOT, d))).filter((f) => /\.tsx?$/.test(f) && !/\.test\.tsx?$/.test(f));
    const entries = [join(ROOT, 'src/cli/main.ts'), ...readdirSync(join(ROOT, 'modules')).map((m) => join(ROOT, 'modules', m, 'index.ts')).filter(existsSync)];
    const reached = new Set<string>();
    const pending = [...entries];
    for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
      if (reached.has(file)) continue;
      reached.add(file);
      pending.push(...referencesOf(file));
    }
    const unreached = shipped.map((f) => relative(ROOT, f)).filter((f) => !reached.has(join(ROOT, f)));
    expect(unreached).toEqual([]);
  });
});
