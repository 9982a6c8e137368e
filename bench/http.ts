// Image serving benchmark: many nodes downloading one large image file at once, from our
// appliance's images module and from nginx, the same file (the same blob on disk) in the same run.
//
//   npx tsx bench/http.ts [--clients 50] [--size-mb 64] [--rounds 3]
//
// Our side is the real appliance (`shoal serve`, images module only) in its own process; nginx
// is one process too (`master_process off`, so one worker, sendfile on), both on 127.0.0.1.
// The client is `curl`, one process per download, all started together; a round's wall time runs
// from the first start to the last exit. Rounds alternate between the servers and the median
// round counts. Needs nginx (Debian nginx-light or nginx) and curl.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { requirements } from '../test/support/environment.js';
import { writeFakeImage } from '../test/support/fake-image.js';

const ROOT = join(import.meta.dirname, '..');
const HOST = '127.0.0.1';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '50' },
    'size-mb': { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
  },
});
const clients = Number(args.clients);
const sizeMb = Number(args['size-mb']);
const rounds = Number(args.rounds);
if (![clients, sizeMb, rounds].every((n) => Number.isInteger(n) && n >= 1) || clients > 500 || sizeMb > 1024 || rounds > 20) {
  console.error('usage: npx tsx bench/http.ts [--clients 1..500] [--size-mb 1..1024] [--rounds 1..20]');
  process.exit(2);
}
const need = requirements({ commands: ['nginx', 'curl'] });
if (!need.ok) {
  console.error(`bench/http: ${need.reason}`);
  process.exit(1);
}

interface Round {
  server: string;
  wallMs: number;
}

const children: ChildProcess[] = [];
const work = mkdtempSync(join(tmpdir(), 'shoal-bench-http-'));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on `port`, or rejects if `child` exits first. */
async function listening(port: number, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before listening`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, HOST, () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on ${HOST}:${port} within 60 s`);
}

function start(command: string, argv: string[], what: string): ChildProcess {
  const child = spawn(command, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  child.once('exit', (code, signal) => {
    if (code && code !== 0) console.error(`${what} exited with ${code ?? signal}:\n${stderr}`);
  });
  children.push(child);
  return child;
}

/** One curl download; resolves with what curl measured. */
function curl(url: string, output = '/dev/null'): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '-o', output, '-w', '%{http_code} %{size_download}', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c));
    child.stderr.on('data', (c: Buffer) => (err += c));
    child.once('error', reject);
    // 'close', not 'exit': the output may still be in the pipe when the process exits.
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`curl ${url} exited with ${code}: ${err.trim()}`));
      const [status, bytes] = out.split(' ').map(Number);
      resolve({ status: status!, bytes: bytes! });
    });
  });
}

async function round(server: string, url: string, expectedBytes: number): Promise<Round> {
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: clients }, () => curl(url)));
  const wallMs = performance.now() - started;
  const bad = results.filter((r) => r.status !== 200 || r.bytes !== expectedBytes);
  if (bad.length) throw new Error(`${server}: ${bad.length} of ${clients} downloads were incomplete: ${JSON.stringify(bad[0])}`);
  return { server, wallMs };
}

async function sha256Of(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`${url}: ${res.status}`);
  const hash = createHash('sha256');
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest('hex');
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const size = sizeMb << 20;
  const image = writeFakeImage(join(work, 'image'), { name: 'bench', version: '1', kernel: randomBytes(size), initrd: randomBytes(4096) });
  const sha256 = image.manifest.kernel!.sha256;

  // Our appliance, as `shoal serve` runs it, with the images module importing the image.
  const oursPort = await freePort();
  const dataDir = join(work, 'data');
  writeFileSync(
    join(work, 'shoal.yaml'),
    JSON.stringify({ dataDir, api: { listen: HOST, port: oursPort }, log: { level: 'warn' }, modules: [{ name: 'images', options: { import: [image.dir] } }] }),
  );
  const ours = start(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'serve', '--config', join(work, 'shoal.yaml')], 'shoal serve');
  await listening(oursPort, ours, 'shoal serve');

  // nginx serving the blob the appliance stored: the same bytes from the same inode.
  const nginxPort = await freePort();
  const blob = join(dataDir, 'modules', 'images', 'blobs', 'sha256', sha256);
  const nginxConf = join(work, 'nginx.conf');
  writeFileSync(
    nginxConf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${work}/nginx-body;
  proxy_temp_path ${work}/nginx-proxy;
  fastcgi_temp_path ${work}/nginx-fastcgi;
  uwsgi_temp_path ${work}/nginx-uwsgi;
  scgi_temp_path ${work}/nginx-scgi;
  server {
    listen ${HOST}:${nginxPort};
    location = /images/bench/1/vmlinuz { alias ${blob}; }
  }
}
`,
  );
  const nginx = start('nginx', ['-p', work, '-c', nginxConf, '-e', join(work, 'nginx-error.log')], 'nginx');
  await listening(nginxPort, nginx, 'nginx');

  const servers = [
    { name: 'shoal', url: `http://${HOST}:${oursPort}/images/bench/1/vmlinuz` },
    { name: 'nginx', url: `http://${HOST}:${nginxPort}/images/bench/1/vmlinuz` },
  ];
  for (const s of servers) {
    const served = await sha256Of(s.url); // also warms the page cache
    if (served !== sha256) throw new Error(`${s.name} served sha256 ${served}, not ${sha256}`);
  }

  console.log(`${clients} concurrent curl downloads of one ${sizeMb} MiB file, ${rounds} rounds per server, alternating`);
  const results: Round[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const s of i % 2 ? [...servers].reverse() : servers) {
      const r = await round(s.name, s.url, size);
      results.push(r);
      console.log(`  round ${i + 1} ${s.name.padEnd(6)} ${(r.wallMs / 1000).toFixed(2)} s  ${((clients * size) / (1 << 20) / (r.wallMs / 1000)).toFixed(0)} MiB/s`);
    }
  }
  const summary = servers.map((s) => {
    const wallMs = median(results.filter((r) => r.server === s.name).map((r) => r.wallMs));
    return { name: s.name, wallMs, mibPerSecond: (clients * size) / (1 << 20) / (wallMs / 1000) };
  });
  console.log('median of rounds:');
  for (const s of summary) console.log(`  ${s.name.padEnd(6)} wall ${(s.wallMs / 1000).toFixed(2)} s  ${s.mibPerSecond.toFixed(0)} MiB/s`);
  const ratio = summary[0]!.mibPerSecond / summary[1]!.mibPerSecond;
  console.log(`ratio shoal/nginx (throughput) ${ratio.toFixed(2)} (goal >= 0.80)`);
}

async function stopAll(): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const force = setTimeout(() => child.kill('SIGKILL'), 5000);
          child.once('exit', () => (clearTimeout(force), resolve()));
          child.kill('SIGTERM');
        }),
    ),
  );
  rmSync(work, { recursive: true, force: true });
}

// Ctrl-C mid-run still stops nginx and the appliance and removes the 64 MiB file.
process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));

main().then(
  () => stopAll(),
  async (err: unknown) => {
    console.error(`bench/http: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll();
    process.exitCode = 1;
  },
);
