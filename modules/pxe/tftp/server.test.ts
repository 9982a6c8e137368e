// Our TFTP server against real clients nobody here wrote: curl, tftp-hpa and atftp, each with the
// options firmware uses (blksize, tsize, windowsize), plus refusals and a client that goes silent.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirements, skipUnless } from '../../../test/support/environment.js';
import { TftpServer, type TftpLogEntry } from './index.js';
import type { TransferObservation } from './transfer.js';

const run = promisify(execFile);
const skip = skipUnless('TFTP server against curl, tftp-hpa and atftp', requirements({ commands: ['curl', 'tftp', 'atftp'] }));
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe.skipIf(skip)('TFTP server with real clients', { timeout: 120_000 }, () => {
  let dir: string;
  let root: string;
  let server: TftpServer;
  let port: number;
  const transfers: TransferObservation[] = [];
  const logs: TftpLogEntry[] = [];
  const files: Record<string, Buffer> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-tftp-'));
    root = join(dir, 'root');
    mkdirSync(join(root, 'sub'), { recursive: true });
    // 40 MB at 512-byte blocks is 81,920 blocks: past 65,535, so the block number rolls over.
    const sizes: Record<string, number> = { 'small.bin': 1000, 'one-mb.bin': 1 << 20, 'sub/exact.bin': 1468 * 4, 'big.bin': 40 << 20 };
    for (const [name, size] of Object.entries(sizes)) {
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
      writeFileSync(join(root, name), data);
      files[name] = data;
    }
    writeFileSync(join(dir, 'secret.txt'), 'outside the root');
    symlinkSync(join(dir, 'secret.txt'), join(root, 'escape.txt'));
    server = new TftpServer({ address: '127.0.0.1', port: 0, root, timeoutMs: 200, retries: 2 }, { onTransfer: (o) => transfers.push(o), onLog: (l) => logs.push(l) });
    port = (await server.start()).port;
  });

  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const fetched = (name: string) => readFileSync(join(dir, `got-${name.replace('/', '_')}`));

  it('serves curl with the block size OVMF asks, byte for byte', async () => {
    for (const name of ['small.bin', 'one-mb.bin', 'sub/exact.bin']) {
      await run('curl', ['-sS', '--tftp-blksize', '1468', '-o', join(dir, `got-${name.replace('/', '_')}`), `tftp://127.0.0.1:${port}/${name}`]);
      expect(sha(fetched(name))).toBe(sha(files[name]!));
    }
    expect(transfers.filter((t) => t.event === 'complete').map((t) => t.path)).toEqual(expect.arrayContaining(['small.bin', 'one-mb.bin', 'sub/exact.bin']));
  });

  it('rolls the block number over for a file of more than 65,535 blocks (tftp-hpa, 512-byte blocks)', async () => {
    await run('tftp', ['127.0.0.1', String(port), '-m', 'binary', '-c', 'get', 'big.bin', join(dir, 'got-big.bin')], { timeout: 110_000 });
    expect(sha(fetched('big.bin'))).toBe(sha(files['big.bin']!));
  });

  it('negotiates blksize, tsize and windowsize with atftp', async () => {
    const out = join(dir, 'got-atftp.bin');
    await run('atftp', ['--option', 'blksize 1432', '--option', 'tsize 0', '--option', 'windowsize 4', '-g', '-r', 'one-mb.bin', '-l', out, '127.0.0.1', String(port)]);
    expect(sha(readFileSync(out))).toBe(sha(files['one-mb.bin']!));
  });

  it('refuses traversal, a symlink out of the root and writes, and logs them', async () => {
    // curl normalises "../" away, so the traversal request is sent raw.
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const reply = new Promise<Buffer>((resolve) => socket.once('message', (m) => resolve(m)));
    socket.send(Buffer.concat([Buffer.from([0, 1]), Buffer.from('../secret.txt\0octet\0')]), port, '127.0.0.1');
    const error = await reply;
    socket.close();
    expect([error.readUInt16BE(0), error.readUInt16BE(2)]).toEqual([5, 2]); // ERROR, access violation
    // An absolute path stays inside the root: /etc/passwd is looked for there, and not found.
    const absolute = await run('curl', ['-sS', '-o', join(dir, 'nope'), `tftp://127.0.0.1:${port}//etc/passwd`]).then(() => 'fetched', () => 'refused');
    expect(absolute).toBe('refused');
    const symlink = await run('curl', ['-sS', '-o', join(dir, 'nope'), `tftp://127.0.0.1:${port}/escape.txt`]).then(() => 'fetched', () => 'refused');
    expect(symlink).toBe('refused');
    const upload = join(dir, 'up.txt');
    writeFileSync(upload, 'x');
    const put = await run('curl', ['-sS', '-T', upload, `tftp://127.0.0.1:${port}/up.txt`]).then(() => 'stored', () => 'refused');
    expect(put).toBe('refused');
    const denied = logs.filter((l) => l.event === 'denied').map((l) => l.path);
    expect(denied).toEqual(expect.arrayContaining(['../secret.txt', 'escape.txt', 'up.txt']));
  });

  it('gives up on a client that stops acknowledging, and frees the transfer', async () => {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const clientPort = socket.address().port;
    const rrq = Buffer.concat([Buffer.from([0, 1]), Buffer.from('one-mb.bin\0octet\0')]);
    const firstData = new Promise<void>((resolve) => socket.once('message', () => resolve()));
    socket.send(rrq, port, '127.0.0.1');
    await firstData; // then never acknowledge
    const deadline = Date.now() + 10_000;
    while (!transfers.some((t) => t.event === 'error' && t.client.port === clientPort) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    socket.close();
    expect(transfers.some((t) => t.event === 'error' && t.client.port === clientPort)).toBe(true);
    // The transfer's socket closes just after it reports the error.
    while (server.activeTransfers > 0 && Date.now() < deadline + 5_000) await new Promise((r) => setTimeout(r, 50));
    expect(server.activeTransfers).toBe(0);
  });
});
