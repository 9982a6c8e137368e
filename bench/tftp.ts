// 20 concurrent curl clients fetch one 8 MB file over TFTP (blksize 1468, as OVMF asks) from our
// server and from tftpd-hpa, alternating rounds in the same run; prints wall times, MB/s and the
// ratio. Run: npm run bench:tftp [-- --clients N --rounds N]
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { TftpServer } from '../modules/pxe/tftp/index.js';

const run = promisify(execFile);
const { values } = parseArgs({ options: { clients: { type: 'string', default: '20' }, rounds: { type: 'string', default: '3' } } });
const clients = Number(values.clients);
const rounds = Number(values.rounds);
const SIZE = 8 << 20;

async function freeUdpPort(): Promise<number> {
  // A free TCP port on loopback is free for UDP often enough; tftpd-hpa reports a clash loudly.
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function round(port: number, dir: string, label: string, expected: string): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, (_, i) => run('curl', ['-sS', '--tftp-blksize', '1468', '-o', join(dir, `${label}-${i}.bin`), `tftp://127.0.0.1:${port}/kernel.bin`], { timeout: 120_000 })),
  );
  const seconds = (performance.now() - started) / 1000;
  for (let i = 0; i < clients; i++) {
    if (createHash('sha256').update(readFileSync(join(dir, `${label}-${i}.bin`))).digest('hex') !== expected) throw new Error(`${label}: client ${i} got different bytes`);
  }
  return seconds;
}

const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-tftp-'));
let peer: ChildProcess | undefined;
let ours: TftpServer | undefined;
try {
  const root = join(dir, 'root');
  const data = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  await run('mkdir', ['-p', root]);
  writeFileSync(join(root, 'kernel.bin'), data);
  const expected = createHash('sha256').update(data).digest('hex');

  ours = new TftpServer({ address: '127.0.0.1', port: 0, root }, {});
  const oursPort = (await ours.start()).port;
  const peerPort = await freeUdpPort();
  // -L: stay in the foreground; -s: chroot-like secure root; -a: listen address.
  peer = spawn('in.tftpd', ['-L', '-s', '-a', `127.0.0.1:${peerPort}`, root], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));

  console.log(`${clients} concurrent curl clients fetching an 8 MB file over TFTP (blksize 1468), ${rounds} rounds each, alternating`);
  const times: Record<string, number[]> = { shoal: [], 'tftpd-hpa': [] };
  for (let r = 0; r < rounds; r++) {
    for (const [label, port] of (r % 2 === 0 ? [['shoal', oursPort], ['tftpd-hpa', peerPort]] : [['tftpd-hpa', peerPort], ['shoal', oursPort]]) as [string, number][]) {
      const seconds = await round(port, dir, label, expected);
      times[label]!.push(seconds);
      console.log(`  round ${r + 1} ${label.padEnd(9)} ${seconds.toFixed(2)} s  ${((clients * SIZE) / (1 << 20) / seconds).toFixed(0)} MiB/s`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const oursMedian = median(times.shoal!);
  const peerMedian = median(times['tftpd-hpa']!);
  console.log(`median: shoal ${oursMedian.toFixed(2)} s, tftpd-hpa ${peerMedian.toFixed(2)} s`);
  console.log(`ratio shoal/tftpd-hpa (throughput) ${(peerMedian / oursMedian).toFixed(2)} (goal >= 1.00)`);
} finally {
  peer?.kill('SIGKILL');
  await ours?.close();
  rmSync(dir, { recursive: true, force: true });
}
