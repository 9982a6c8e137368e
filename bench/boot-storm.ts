// Boot-storm benchmark: N simulated PXE clients power on within one second and each does what a
// BIOS node does (DHCP DORA, TFTP of the loader the ACK names, its iPXE script over HTTP, kernel +
// initrd, then the root image its kernel line names), every byte checked; against the appliance
// and against the stack an operator would otherwise assemble (dnsmasq for DHCP + TFTP, nginx for
// HTTP, serving the same files and an equivalent static script per MAC), alternating in one run.
//
//   npm run bench:boot-storm [-- --clients 200 --root-mb 300 --rounds 2]
//
// Clients run in a network namespace of their own, joined by a veth to the server namespace where
// each stack runs in turn (started afresh, page cache warmed for both); no packet leaves them.
// Needs root, ip, ss, dnsmasq and nginx; without them it prints why and exits 0 ("skipped").
// Both stacks log warnings only; dnsmasq gets tftp-max raised (its default 50 would refuse most of
// a storm); nginx runs as Debian ships it (worker_processes auto, sendfile, tcp_nopush).
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { requirements } from '../test/support/environment.js';
import { percentile, runBootStorm, stageTimes, STAGES, type StormRun } from './boot-storm/run.js';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '200' },
    'root-mb': { type: 'string', default: '300' },
    rounds: { type: 'string', default: '2' },
  },
});
const clients = Number(args.clients);
const rootMb = Number(args['root-mb']);
const rounds = Number(args.rounds);
if (![clients, rootMb, rounds].every((n) => Number.isInteger(n) && n >= 1) || clients > 1000 || rootMb > 2048 || rounds > 10) {
  console.error('usage: npm run bench:boot-storm -- [--clients 1..1000] [--root-mb 1..2048] [--rounds 1..10]');
  process.exit(2);
}
const need = requirements({ root: true, commands: ['ip', 'ss', 'dnsmasq', 'nginx'] });
if (!need.ok) {
  console.log(`bench/boot-storm: skipped: ${need.reason}`);
  process.exit(0);
}

const seconds = (ms: number) => (ms / 1000).toFixed(2);

function print(run: StormRun): void {
  const mib = run.bytes / (1 << 20);
  console.log(
    `round ${run.round} ${run.stack.padEnd(13)} total ${seconds(run.totalMs)} s  ${(mib / (run.totalMs / 1000)).toFixed(0)} MiB/s  ` +
      `failures ${run.failures}/${run.clients.length}  UDP retransmits ${run.clients.reduce((a, c) => a + c.retransmits, 0)}  server CPU ${run.serverCpuSeconds.toFixed(1)} s  clients CPU ${run.clientCpuSeconds.toFixed(1)} s  machine ${(100 * run.machineBusy).toFixed(0)}% busy`,
  );
  for (const stage of STAGES) {
    const t = stageTimes(run, stage);
    if (t.length === 0) continue;
    console.log(
      `    ${stage.padEnd(14)} p50 ${seconds(percentile(t, 50)).padStart(7)} s  p95 ${seconds(percentile(t, 95)).padStart(7)} s  p99 ${seconds(percentile(t, 99)).padStart(7)} s  max ${seconds(Math.max(...t)).padStart(7)} s  (${t.length} clients)`,
    );
  }
  const failed = run.clients.filter((c) => c.failure);
  for (const c of failed.slice(0, 5)) console.log(`    FAILED ${c.mac} at ${c.failure!.stage}: ${c.failure!.message}`);
  if (failed.length > 5) console.log(`    … and ${failed.length - 5} more`);
}

console.log(
  `boot storm: ${clients} clients started within 1 s, each DHCP + TFTP loader + iPXE script + kernel 8 MiB + initrd 32 MiB + root ${rootMb} MiB, ` +
    `bytes checked; ${rounds} round(s) of shoal then dnsmasq+nginx; ${availableParallelism()} cores`,
);
runBootStorm({ clients, rootMb, rounds, onRun: print, log: (line) => console.log(`  ${line}`) }).then(
  (report) => {
    const ratios: string[] = [];
    let failures = 0;
    for (let round = 1; round <= rounds; round++) {
      const ours = report.runs.find((r) => r.round === round && r.stack === 'shoal')!;
      const peer = report.runs.find((r) => r.round === round && r.stack === 'dnsmasq+nginx')!;
      failures += ours.failures + peer.failures;
      const ratio = ours.totalMs / peer.totalMs;
      ratios.push(`round ${round}: ${seconds(ours.totalMs)} s / ${seconds(peer.totalMs)} s = ${ratio.toFixed(2)}`);
      console.log(`round ${round}: total time shoal/peer ${ratio.toFixed(2)} (speed ${(1 / ratio).toFixed(2)}x the peer; goal: speed >= 1.00 with no failures)`);
    }
    console.log(`summary: ${clients} clients x ${rootMb} MiB root, total time shoal/dnsmasq+nginx ${ratios.join('; ')}; failures ${failures}`);
    if (failures > 0) process.exitCode = 1;
  },
  (err: unknown) => {
    console.error(`bench/boot-storm: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
