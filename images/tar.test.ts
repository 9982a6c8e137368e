// The ustar writer, read back by two independent readers: busybox tar (what the initramfs uses)
// and GNU tar (which is strict about header checksums and fields).
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../test/support/environment.js';
import { writeTar, type TarEntry } from './tar.js';

const MTIME = 1_700_000_000;
const entries: TarEntry[] = [
  { kind: 'file', path: 'etc/hello', mode: 0o640, data: Buffer.from('hello, root image\n') },
  { kind: 'dir', path: 'etc', mode: 0o755 },
  // 600 bytes: one full block and a padded second one.
  { kind: 'file', path: 'bin/tool', mode: 0o755, data: Buffer.from(`#!/bin/sh\n${'#'.repeat(589)}\n`) },
  { kind: 'dir', path: 'bin', mode: 0o755 },
  { kind: 'symlink', path: 'bin/alias', target: 'tool' },
  { kind: 'dir', path: 'tmp', mode: 0o1777 },
  { kind: 'dir', path: 'dev', mode: 0o755 },
  { kind: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
  { kind: 'file', path: 'empty', mode: 0o644, data: Buffer.alloc(0) },
];

describe('writeTar', () => {
  it('gives the same bytes whatever the order of the entries, in whole 512-byte blocks', () => {
    const tar = writeTar(entries, MTIME);
    expect(writeTar([...entries].reverse(), MTIME).equals(tar)).toBe(true);
    // 9 headers, 2 data blocks for bin/tool, 1 for etc/hello, 2 end blocks.
    expect(tar.length).toBe((9 + 2 + 1 + 2) * 512);
  });

  it('rejects absolute, unnormalised, repeated and over-long paths', () => {
    expect(() => writeTar([{ kind: 'dir', path: '/etc', mode: 0o755 }], 0)).toThrow(/relative/);
    expect(() => writeTar([{ kind: 'dir', path: 'etc/../x', mode: 0o755 }], 0)).toThrow(/normalised/);
    expect(() => writeTar([entries[1]!, entries[1]!], 0)).toThrow(/twice/);
    expect(() => writeTar([{ kind: 'dir', path: 'x'.repeat(101), mode: 0o755 }], 0)).toThrow(/longer than 100/);
  });

  for (const reader of [
    { name: 'busybox tar', command: 'busybox', args: ['tar'] },
    { name: 'GNU tar', command: 'tar', args: [] },
  ]) {
    const skip = skipUnless(`tar read-back by ${reader.name}`, requirements({ commands: [reader.command] }));
    describe.skipIf(skip)(`read back by ${reader.name}`, () => {
      let dir: string | undefined;
      afterEach(() => {
        if (dir) rmSync(dir, { recursive: true, force: true });
      });
      const tar = (args: string[], options: { cwd?: string } = {}) =>
        execFileSync(reader.command, [...reader.args, ...args], { input: writeTar(entries, MTIME), encoding: 'utf8', env: { TZ: 'UTC' }, stdio: ['pipe', 'pipe', 'pipe'], ...options });

      it('lists every entry, in order, owned by 0/0', () => {
        const numericOwner = reader.command === 'tar' ? ['--numeric-owner'] : []; // busybox tar has no names to show
        const lines = tar(['-t', '-v', '-f', '-', ...numericOwner]).trim().split('\n');
        expect(lines.map((l) => l.replace(/ -> .*/, '').split(/\s+/).at(-1))).toEqual(['bin/', 'bin/alias', 'bin/tool', 'dev/', 'dev/console', 'empty', 'etc/', 'etc/hello', 'tmp/']);
        for (const line of lines) expect(line).toMatch(/ 0\/0 /);
        expect(lines.find((l) => l.endsWith('etc/hello'))).toMatch(/^-rw-r----- 0\/0 +18 2023-11-14 22:13(:20)? etc\/hello$/);
        expect(lines.find((l) => l.includes('tmp/'))).toMatch(/^drwxrwxrwt /);
      });

      it('extracts files, links, modes and times intact', () => {
        dir = mkdtempSync(join(tmpdir(), 'shoal-tar-'));
        tar(['-x', '-f', '-'], { cwd: dir });
        expect(readFileSync(join(dir, 'bin/tool'), 'utf8')).toBe(`#!/bin/sh\n${'#'.repeat(589)}\n`);
        expect(lstatSync(join(dir, 'bin/tool')).mode & 0o7777).toBe(0o755);
        expect(lstatSync(join(dir, 'etc/hello')).mtimeMs).toBe(MTIME * 1000);
        expect(readlinkSync(join(dir, 'bin/alias'))).toBe('tool');
        expect(readFileSync(join(dir, 'empty')).length).toBe(0);
        if (process.getuid?.() === 0) {
          const console = lstatSync(join(dir, 'dev/console'));
          expect(console.isCharacterDevice()).toBe(true);
          expect(console.rdev).toBe((5 << 8) | 1);
          expect(lstatSync(join(dir, 'tmp')).mode & 0o7777).toBe(0o1777);
        }
      });
    });
  }
});
