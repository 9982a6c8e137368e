// 20 concurrent curl clients fetch one 8 MB file over TFTP (blksize 1468, as OVMF asks) from our
// server and from tftpd-hpa, in alternating rounds in the same run; prints each round, the median
// and spread of both throughputs, and the ratio. Run: npm run bench:tftp [-- --clients N --rounds N]
//
// Fair by construction: both servers run as their own processes with their default settings (ours
// is this file re-run with --serve), get the same clients with the same options, one untimed
// warm-up round each (page cache for tftpd-hpa, content cache and threads for ours), and take turns
// going first. curl has no windowsize option, so every transfer is RFC 1350 lock-step: one DATA per
// ACK, about 5,700 round trips per client. Every downloaded file is checked byte for byte.
//
// On a shared machine the wall times move with everyone else's load, so each round also prints how
// busy the whole machine was; the ratio is given both from the medians and as the median of each
// round's paired ratio (the two servers of one round ran seconds apart, under similar load).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { TftpServer } from '../modules/pxe/tftp/index.js';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '5' },
    /** Internal: serve ROOT with our server in this process and print its port. */
    serve: { type: 'string' },
  },
});
const SIZE = 8 << 20;
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** The child process: our server with its defaults, as the appliance would run it. */
async function serve(root: string): Promise<void> {
  const server = new TftpServer({ address: '127.0.0.1', port: 0, root });
  const { port } = await server.start();
  await server.warmUp();
  console.log(JSON.stringify({ port, threads: server.config.transferThreads }));
  const stop = () => void server.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

async function freeUdpPort(): Promise<number> {
  // A free TCP port on loopback is free for UDP often enough; tftpd-hpa reports a clash loudly.
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** CPU seconds used so far by a process and all its threads (not its children). */
function processCpu(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Busy and total jiffies of the whole machine. */
function machineCpu(): { busy: number; total: number } {
  const [, ...rest] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = rest.map(Number);
  const idle = n[3]! + n[4]!;
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function bench(clients: number, rounds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-tftp-'));
  const children: ChildProcess[] = [];
  const stopAll = () => {
    for (const child of children) child.kill('SIGTERM');
  };
  process.once('SIGINT', () => {
    stopAll();
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
  try {
    const root = join(dir, 'root');
    mkdirSync(root);
    const data = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    writeFileSync(join(root, 'kernel.bin'), data);
    const expected = createHash('sha256').update(data).digest('hex');

    const ours = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve', root], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(ours);
    const ready = await new Promise<{ port: number; threads: number }>((resolve, reject) => {
      createInterface({ input: ours.stdout! }).once('line', (line) => resolve(JSON.parse(line) as { port: number; threads: number }));
      ours.once('exit', (code) => reject(new Error(`our server exited with ${code} before it was ready`)));
    });
    const peerPort = await freeUdpPort();
    // -L: stay in the foreground; -s: serve the root as if it were /; -a: listen address.
    const peer = spawn('in.tftpd', ['-L', '-s', '-a', `127.0.0.1:${peerPort}`, root], { stdio: 'ignore' });
    children.push(peer);
    await new Promise((r) => setTimeout(r, 500));
    if (peer.exitCode !== null) throw new Error('in.tftpd exited at start');

    const { stdout: curlVersion } = await run('curl', ['--version']);
    console.log(`${clients} concurrent curl clients fetching an 8 MiB file over TFTP (blksize 1468, lock-step), ${rounds} rounds, alternating who goes first`);
    console.log(`${curlVersion.split('\n')[0]!.split(' ').slice(0, 2).join(' ')}; ${availableParallelism()} cores; shoal ${ready.threads} transfer threads; tftpd-hpa forks a process per transfer`);

    const round = async (label: string, port: number) => {
      const pid = label === 'shoal' ? ours.pid! : undefined;
      const cpu0 = pid ? processCpu(pid) : 0;
      const m0 = machineCpu();
      const started = performance.now();
      await Promise.all(
        Array.from({ length: clients }, (_, i) =>
          run('curl', ['-sS', '--max-time', '120', '--tftp-blksize', '1468', '-o', join(dir, `${label}-${i}.bin`), `tftp://127.0.0.1:${port}/kernel.bin`]),
        ),
      );
      const seconds = (performance.now() - started) / 1000;
      const m1 = machineCpu();
      const cpu = pid ? processCpu(pid) - cpu0 : undefined;
      for (let i = 0; i < clients; i++) {
        if (createHash('sha256').update(readFileSync(join(dir, `${label}-${i}.bin`))).digest('hex') !== expected) throw new Error(`${label}: client ${i} got different bytes`);
        rmSync(join(dir, `${label}-${i}.bin`));
      }
      return { seconds, mibps: (clients * SIZE) / (1 << 20) / seconds, cpu, busy: (m1.busy - m0.busy) / (m1.total - m0.total) };
    };

    await round('shoal', ready.port);
    await round('tftpd-hpa', peerPort);
    const results: Record<string, { seconds: number; mibps: number }[]> = { shoal: [], 'tftpd-hpa': [] };
    const paired: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const order: [string, number][] = [
        ['shoal', ready.port],
        ['tftpd-hpa', peerPort],
      ];
      if (r % 2 === 1) order.reverse();
      const byLabel: Record<string, number> = {};
      for (const [label, port] of order) {
        const result = await round(label, port);
        results[label]!.push(result);
        byLabel[label] = result.mibps;
        const cpu = result.cpu === undefined ? '' : `  server CPU ${result.cpu.toFixed(2)} s`;
        console.log(`  round ${r + 1} ${label.padEnd(9)} ${result.seconds.toFixed(2)} s  ${result.mibps.toFixed(1).padStart(5)} MiB/s  machine ${(100 * result.busy).toFixed(0)}% busy${cpu}`);
      }
      paired.push(byLabel.shoal! / byLabel['tftpd-hpa']!);
    }
    const summary = (label: string) => {
      const xs = results[label]!.map((r) => r.mibps);
      return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
    };
    const a = summary('shoal');
    const b = summary('tftpd-hpa');
    console.log(`shoal     median ${a.median.toFixed(1)} MiB/s (${a.min.toFixed(1)}–${a.max.toFixed(1)})`);
    console.log(`tftpd-hpa median ${b.median.toFixed(1)} MiB/s (${b.min.toFixed(1)}–${b.max.toFixed(1)})`);
    console.log(`ratio shoal/tftpd-hpa (throughput): ${(a.median / b.median).toFixed(2)} from the medians, ${median(paired).toFixed(2)} median of per-round ratios [${paired.map((p) => p.toFixed(2)).join(' ')}] (goal >= 1.00)`);
  } finally {
    stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.serve !== undefined) await serve(values.serve);
else await bench(Number(values.clients), Number(values.rounds));
