// `npm run fuzz -- --inputs 1000000`: the CI fuzz tests' generators, run long, outside CI.
// Prints per target the inputs run, how many the parser refused with its own typed error, how
// many it accepted, the crashes (anything else thrown: 0 expected) and the time taken.
// Options: --inputs N per target (default 100000), --seed S, --from I (first input number, to
// reproduce a crash), --minutes M per target (stops a target early), --target NAME (substring).
import { parseArgs } from 'node:util';
import { runFuzzTarget, type FuzzTarget } from './kit.js';
import { agentFuzzTarget } from './targets/agent.js';
import { imagesFuzzTarget } from './targets/images.js';
import { inventoryFuzzTarget } from './targets/inventory.js';
import { ipmiFuzzTarget, ipmiSessionFuzzTarget } from './targets/ipmi.js';
import { ociFuzzTarget } from './targets/oci.js';
import { redfishFuzzTarget } from './targets/redfish.js';

const TARGETS: FuzzTarget[] = [ipmiFuzzTarget, ipmiSessionFuzzTarget, redfishFuzzTarget, agentFuzzTarget, inventoryFuzzTarget, imagesFuzzTarget, ociFuzzTarget];

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    from: { type: 'string', default: '0' },
    minutes: { type: 'string' },
    target: { type: 'string' },
  },
});
const count = (name: string, raw: string | undefined): number => {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`--${name} must be a whole number, got ${raw}`);
  return value;
};
const inputs = count('inputs', values.inputs);
const seed = count('seed', values.seed);
const from = count('from', values.from);
const maxMs = values.minutes === undefined ? undefined : Number(values.minutes) * 60_000;
if (maxMs !== undefined && !(maxMs > 0)) throw new Error(`--minutes must be positive, got ${values.minutes}`);
const selected = TARGETS.filter((t) => values.target === undefined || t.name.includes(values.target));
if (selected.length === 0) throw new Error(`no target matches ${values.target}; targets: ${TARGETS.map((t) => t.name).join(', ')}`);

const columns = (cells: (string | number)[]) => cells.map((c, i) => String(c).padStart(i === 0 ? 0 : 12).padEnd(i === 0 ? 16 : 0)).join(' ');
console.log(columns(['target', 'inputs', 'refused', 'accepted', 'crashes', 'seconds']));
let crashes = 0;
for (const target of selected) {
  const stats = await runFuzzTarget(target, { inputs, seed, from, ...(maxMs === undefined ? {} : { maxMs }) });
  crashes += stats.crashes;
  console.log(columns([stats.target, stats.inputs, stats.refused, stats.accepted, stats.crashes, (stats.ms / 1000).toFixed(1)]));
  for (const report of stats.crashReports) console.log(`  crash: ${report}`);
}
process.exitCode = crashes === 0 ? 0 : 1;
