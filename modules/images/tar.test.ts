// The upload unpacker: archives GNU tar writes are read; anything that could write outside the
// staging directory, or is not a plain file, refuses the upload.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../../test/support/environment.js';
import { extractFlatTar, TarError } from './tar.js';

/** One ustar header block, written by hand so the tests can say exactly what an entry is. */
function header(name: string, size: number, type = '0'): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, 'utf8');
  block.write('0000644\0', 100);
  block.write('0000000\0', 108);
  block.write('0000000\0', 116);
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  block.write('00000000000\0', 136);
  block.write(type, 156);
  block.write('ustar\0', 257, 'latin1');
  block.write('00', 263);
  block.fill(0x20, 148, 156);
  const sum = block.reduce((s, b) => s + b, 0);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function archive(entries: { name: string; data?: Buffer; type?: string }[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    parts.push(header(e.name, data.length, e.type), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

/** Delivers the archive in small uneven chunks, as a socket would. */
const chunked = (bytes: Buffer) => Readable.from((function* () {
  for (let i = 0; i < bytes.length; i += 777) yield bytes.subarray(i, i + 777);
})());

describe('flat tar unpacking', () => {
  let work: string;
  let dir: string;
  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'shoal-tar-'));
    dir = join(work, 'out');
    mkdirSync(dir);
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  const refused = async (bytes: Buffer, max = 1 << 20) => {
    // Each upload gets its own staging directory, as in the module.
    const staging = mkdtempSync(join(work, 'staging-'));
    const err = await extractFlatTar(chunked(bytes), staging, max).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TarError);
    return (err as Error).message;
  };

  it('writes every file with its bytes, whatever the chunking', async () => {
    const kernel = randomBytes(5000);
    const json = Buffer.from('{"x":1}');
    const names = await extractFlatTar(chunked(archive([{ name: './', type: '5' }, { name: './image.json', data: json }, { name: 'vmlinuz', data: kernel }, { name: 'empty', data: Buffer.alloc(0) }])), dir, 1 << 20);
    expect(names).toEqual(['image.json', 'vmlinuz', 'empty']);
    expect(readFileSync(join(dir, 'vmlinuz'))).toEqual(kernel);
    expect(readFileSync(join(dir, 'image.json'))).toEqual(json);
    expect(readFileSync(join(dir, 'empty')).length).toBe(0);
  });

  it('refuses paths, links, devices, duplicates, truncation, size and non-tar bodies', async () => {
    expect(await refused(archive([{ name: '../evil', data: Buffer.from('x') }]))).toContain('"../evil" is not a plain file name');
    expect(await refused(archive([{ name: 'sub/vmlinuz', data: Buffer.from('x') }]))).toContain('not a plain file name');
    expect(await refused(archive([{ name: 'vmlinuz', type: '2' }]))).toContain('vmlinuz is not a regular file (tar type "2")');
    expect(await refused(archive([{ name: 'GlobalHead', type: 'g', data: Buffer.from('x') }]))).toContain('not a regular file');
    // "<length> path=<value>\n", the length counting its own two digits.
    const paxPath = (path: string) => Buffer.from(`${path.length + 9} path=${path}\n`);
    expect(paxPath('../evil').toString()).toBe('16 path=../evil\n');
    expect(await refused(archive([{ name: 'PaxHeader', type: 'x', data: paxPath('../evil') }, { name: 'harmless', data: Buffer.from('x') }]))).toContain('"../evil" is not a plain file name');
    expect(await refused(archive([{ name: 'sub', type: '5' }]))).toContain('directory "sub"');
    expect(await refused(archive([{ name: 'a', data: Buffer.from('1') }, { name: 'a', data: Buffer.from('2') }]))).toContain('a twice');
    expect(await refused(archive(['a', 'b', 'c', 'd', 'e', 'f'].map((name) => ({ name, data: Buffer.from(name) }))))).toContain('more than 5 files');
    const whole = archive([{ name: 'vmlinuz', data: randomBytes(3000) }]);
    expect(await refused(whole.subarray(0, 2000))).toContain('ends early');
    expect(await refused(whole, 1000)).toContain('larger than 1000 bytes');
    expect(await refused(Buffer.alloc(1024, 'a'))).toContain('not a tar archive');
    expect(existsSync(join(work, 'evil'))).toBe(false);
  });

  it.skipIf(skipUnless('tar archives from GNU tar', requirements({ commands: ['tar'] })))('reads what GNU tar writes, ./ and all', async () => {
    const src = join(work, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'image.json'), '{}');
    writeFileSync(join(src, 'initrd.img'), randomBytes(70_000));
    for (const format of ['gnu', 'ustar', 'posix']) {
      rmSync(dir, { recursive: true });
      mkdirSync(dir);
      const bytes = execFileSync('tar', [`--format=${format}`, '-C', src, '-cf', '-', '.']);
      // The posix format puts a pax header (times) before every entry.
      const names = await extractFlatTar(chunked(bytes), dir, 1 << 20);
      expect(names.sort(), format).toEqual(['image.json', 'initrd.img']);
      expect(readdirSync(dir).sort()).toEqual(['image.json', 'initrd.img']);
      expect(readFileSync(join(dir, 'initrd.img'))).toEqual(readFileSync(join(src, 'initrd.img')));
    }
  });
});
