// The newc writer, read back by an independent reader: busybox cpio.
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../test/support/environment.js';
import { writeNewc, type CpioEntry } from './newc.js';

const MTIME = 1_700_000_000;
const entries: CpioEntry[] = [
  { kind: 'file', path: 'etc/hello', mode: 0o640, data: Buffer.from('hello, initramfs\n') },
  { kind: 'dir', path: 'etc', mode: 0o755 },
  { kind: 'file', path: 'bin/tool', mode: 0o755, data: Buffer.from('#!/bin/sh\necho odd length') },
  { kind: 'dir', path: 'bin', mode: 0o755 },
  { kind: 'symlink', path: 'bin/alias', target: 'tool' },
  { kind: 'dir', path: 'dev', mode: 0o755 },
  { kind: 'char', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
  { kind: 'file', path: 'empty', mode: 0o644, data: Buffer.alloc(0) },
];

describe('writeNewc', () => {
  it('gives the same bytes whatever the order of the entries', () => {
    expect(writeNewc([...entries].reverse(), MTIME).equals(writeNewc(entries, MTIME))).toBe(true);
  });

  it('rejects absolute, unnormalised and repeated paths', () => {
    expect(() => writeNewc([{ kind: 'dir', path: '/etc', mode: 0o755 }], 0)).toThrow(/relative/);
    expect(() => writeNewc([{ kind: 'dir', path: 'etc/../x', mode: 0o755 }], 0)).toThrow(/normalised/);
    expect(() => writeNewc([entries[1]!, entries[1]!], 0)).toThrow(/twice/);
  });

  const skip = skipUnless('newc read-back', requirements({ commands: ['busybox'] }));
  describe.skipIf(skip)('read back by busybox cpio', () => {
    let dir: string | undefined;
    afterEach(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('lists every entry with its type, mode, owner and time', () => {
      const listing = execFileSync('busybox', ['cpio', '-t', '-v'], { input: writeNewc(entries, MTIME), encoding: 'utf8', env: { TZ: 'UTC' }, stdio: ['pipe', 'pipe', 'pipe'] });
      const lines = listing.trim().split('\n');
      expect(lines.map((l) => l.split(/\s+/).slice(5).join(' '))).toEqual([
        'bin',
        'bin/alias -> tool',
        'bin/tool',
        'dev',
        'dev/console',
        'empty',
        'etc',
        'etc/hello',
      ]);
      expect(lines.find((l) => l.endsWith('etc/hello'))).toMatch(/^-rw-r----- 0\/0 +17 2023-11-14 22:13:20 etc\/hello$/);
      expect(lines.find((l) => l.endsWith('dev/console'))).toMatch(/^crw------- 0\/0 /);
    });

    it('extracts files, links and (as root) device numbers intact', () => {
      dir = mkdtempSync(join(tmpdir(), 'shoal-newc-'));
      execFileSync('busybox', ['cpio', '-i', '-d', '-m'], { input: writeNewc(entries, MTIME), cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
      expect(readFileSync(join(dir, 'bin/tool'), 'utf8')).toBe('#!/bin/sh\necho odd length');
      expect(lstatSync(join(dir, 'bin/tool')).mode & 0o7777).toBe(0o755);
      expect(lstatSync(join(dir, 'etc/hello')).mtimeMs).toBe(MTIME * 1000);
      expect(readlinkSync(join(dir, 'bin/alias'))).toBe('tool');
      expect(readFileSync(join(dir, 'empty')).length).toBe(0);
      if (process.getuid?.() === 0) {
        const console = lstatSync(join(dir, 'dev/console'));
        expect(console.isCharacterDevice()).toBe(true);
        expect(console.rdev).toBe((5 << 8) | 1);
      }
    });
  });
});
