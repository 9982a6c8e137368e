// Power-status reads from many BMCs: Shoal's IPMI client against one ipmitool process per
// query, both reading the same N ipmi_sim BMCs on loopback in the same run.
//
//   npx tsx bench/ipmi.ts [N]        (default N = 50)
//
// Ours: one shared UDP socket, all N BMCs at once, measured twice — with a fresh session
// per BMC (channel capabilities, Open Session, RAKP 1-4, Get Chassis Status, Close Session)
// and on sessions already open from an earlier command. ipmitool: `ipmitool -I lanplus -C 3 ... power
// status`, two processes at a time, as a provisioning script would run it.
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { requirements } from '../test/support/environment.js';
import { IpmiClient } from '../modules/ipmi/client.js';
import { IpmiTransport } from '../modules/ipmi/transport.js';
import { startIpmiSim, type SimulatedBmc } from '../test/support/ipmi-sim.js';

const run = promisify(execFile);
const IPMITOOL_PARALLELISM = 2;
const START_PARALLELISM = 10;
/** Our reads are short and the machine is shared: take the median of a few. */
const OUR_ROUNDS = 3;

/** Runs `task` over `items` with at most `limit` in flight; results keep the input order. */
async function pool<T, R>(items: T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function timed<R>(work: () => Promise<R>): Promise<{ ms: number; result: R }> {
  const started = performance.now();
  const result = await work();
  return { ms: performance.now() - started, result };
}

async function medianOf<R>(rounds: number, work: () => Promise<R>): Promise<{ ms: number; all: number[]; result: R }> {
  const runs: { ms: number; result: R }[] = [];
  for (let i = 0; i < rounds; i++) runs.push(await timed(work));
  const sorted = [...runs].sort((a, b) => a.ms - b.ms);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return { ...median, all: runs.map((run) => run.ms) };
}

async function ipmitoolPowerStatus(bmc: SimulatedBmc): Promise<string> {
  const { stdout } = await run(
    'ipmitool',
    ['-I', 'lanplus', '-C', '3', '-H', bmc.host, '-p', String(bmc.port), '-U', bmc.username, '-P', bmc.password, 'power', 'status'],
    { timeout: 30_000 },
  );
  const power = /Chassis Power is (on|off)/.exec(stdout)?.[1];
  if (!power) throw new Error(`ipmitool on port ${bmc.port} said: ${stdout.trim()}`);
  return power;
}

async function main(): Promise<void> {
  const requirement = requirements({ commands: ['ipmi_sim', 'ipmitool'] });
  if (!requirement.ok) {
    console.error(`bench/ipmi: cannot run: ${requirement.reason}`);
    process.exitCode = 1;
    return;
  }
  const wanted = Number(process.argv[2] ?? 50);
  if (!Number.isInteger(wanted) || wanted < 1) throw new Error('N must be a positive integer');

  const bmcs: SimulatedBmc[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(bmcs.splice(0).map((bmc) => bmc.stop()));
  };
  const onSignal = (): void => {
    void stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const transport = await IpmiTransport.open();
  try {
    // Start as many BMCs as the machine holds, up to N.
    await pool(Array.from({ length: wanted }, (_, i) => i), START_PARALLELISM, async () => {
      try {
        bmcs.push(await startIpmiSim());
      } catch (error) {
        console.warn(`could not start an ipmi_sim: ${(error as Error).message}`);
      }
    });
    const n = bmcs.length;
    if (n === 0) throw new Error('no ipmi_sim could be started');
    console.log(`N = ${n} ipmi_sim BMCs on 127.0.0.1${n < wanted ? ` (asked for ${wanted})` : ''}`);

    const newClient = (bmc: SimulatedBmc): IpmiClient =>
      new IpmiClient({ host: bmc.host, port: bmc.port, username: bmc.username, password: bmc.password, transport });

    // Every third BMC powered on, so a tool that misreads power shows up in the agreement check.
    const warm = bmcs.map(newClient);
    const retransmissions: Record<string, number> = {};
    const count = (phase: string, before: number): void => {
      retransmissions[phase] = transport.retransmissions - before;
    };
    let before = transport.retransmissions;
    await Promise.all(warm.map((client, i) => (i % 3 === 0 ? client.chassisControl('on') : client.getChassisStatus())));

    count('warm-up', before);
    before = transport.retransmissions;
    // Fresh sessions, closed after the read, as each ipmitool process does.
    const fresh = await medianOf(OUR_ROUNDS, async () => {
      const once = bmcs.map(newClient);
      const statuses = await Promise.all(once.map((client) => client.getChassisStatus()));
      await Promise.all(once.map((client) => client.close()));
      return statuses;
    });
    count('fresh', before);
    before = transport.retransmissions;
    // Sessions the warm clients opened above.
    const reused = await medianOf(OUR_ROUNDS, () => Promise.all(warm.map((client) => client.getChassisStatus())));
    count('reused', before);
    // Same sessions, a command ipmi_sim answers without running its chassis script: the
    // difference to the line above is the BMC forking that script, not the protocol.
    const deviceIds = await medianOf(OUR_ROUNDS, () => Promise.all(warm.map((client) => client.getDeviceId())));
    const sessionsOpened = warm.reduce((sum, client) => sum + client.sessionsOpened, 0);
    await Promise.all(warm.map((client) => client.close()));

    const ipmitool = await timed(() => pool(bmcs, IPMITOOL_PARALLELISM, ipmitoolPowerStatus));

    const ours = fresh.result.map((status) => status.power);
    const mismatches = ours.filter((power, i) => power !== ipmitool.result[i]).length;
    const expectedOn = bmcs.filter((_, i) => i % 3 === 0).length;
    const seenOn = ours.filter((power) => power === 'on').length;

    const line = (label: string, ms: number, all?: number[]): string =>
      `  ${label.padEnd(68)} ${ms.toFixed(1).padStart(9)} ms${all ? `  (median of ${all.map((x) => x.toFixed(0)).join(', ')})` : ''}`;
    console.log('power status of every BMC, wall time:');
    console.log(line(`ours, a fresh session per BMC (open, read, close), all ${n} at once`, fresh.ms, fresh.all));
    console.log(line(`ours, reused sessions (${sessionsOpened} for ${n} BMCs), all ${n} at once`, reused.ms, reused.all));
    console.log(line(`  for scale: Get Device ID on the same sessions (no chassis script)`, deviceIds.ms, deviceIds.all));
    console.log(line(`ipmitool -I lanplus -C 3 power status, ${IPMITOOL_PARALLELISM} processes at a time`, ipmitool.ms));
    console.log(`ratio ipmitool / ours, fresh sessions:  ${(ipmitool.ms / fresh.ms).toFixed(1)}x`);
    console.log(`ratio ipmitool / ours, reused sessions: ${(ipmitool.ms / reused.ms).toFixed(1)}x`);
    const phases = Object.entries(retransmissions).map(([phase, n]) => `${phase} ${n}`).join(', ');
    console.log(`our retransmissions (reply later than the wait): ${phases}; late replies dropped: ${transport.unsolicitedDatagrams}`);
    console.log(`agreement: ${n - mismatches}/${n} BMCs read the same by both tools; ${seenOn} on (expected ${expectedOn})`);
    if (mismatches > 0 || seenOn !== expectedOn) process.exitCode = 1;
  } finally {
    await transport.close();
    await stopAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
