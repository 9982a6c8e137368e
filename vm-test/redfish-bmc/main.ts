// Runs the Redfish BMC emulator standalone for the vm-test harness:
//
//   tsx vm-test/redfish-bmc/main.ts --port 8000 --password secret --machine qmp \
//     --qmp-socket /run/vm1/qmp.sock --start-command '/run/vm1/start-qemu'
//
// When listening it prints one JSON line on stdout: {"url", "port", "certificateFingerprintSha256"}.
// The start command runs under `sh -c` with BOOT_TARGET (None|Pxe|Hdd), BOOT_ENABLED and BOOT_MODE
// in its environment; it must start QEMU in the background (with QMP on --qmp-socket) and exit.
import { execFile } from 'node:child_process';
import { parseArgs, promisify } from 'node:util';
import { z } from 'zod';
import { emulatedResetTypes, startRedfishBmc } from './emulator.js';
import { FakeMachine } from './fake-machine.js';
import type { BootOverride, EmulatedMachine } from './machine.js';
import { QmpMachine } from './qmp-machine.js';

const execFileAsync = promisify(execFile);

const argsSchema = z.strictObject({
  port: z.coerce.number().int().min(0).max(65535).default(0),
  username: z.string().min(1).default('admin'),
  password: z.string().min(1),
  'system-id': z.string().regex(/^[A-Za-z0-9_-]+$/).default('1'),
  machine: z.enum(['fake', 'qmp']).default('fake'),
  'qmp-socket': z.string().min(1).optional(),
  'start-command': z.string().min(1).optional(),
  'reset-types': z
    .string()
    .transform((list) => list.split(',').map((value) => value.trim()))
    .pipe(z.array(z.enum(emulatedResetTypes)).min(1))
    .optional(),
  'reset-types-via': z.enum(['inline', 'action-info']).default('inline'),
  'no-sessions': z.boolean().default(false),
  etag: z.enum(['none', 'optional', 'required']).default('optional'),
  'reset-task-polls': z.coerce.number().int().min(0).optional(),
  tls: z.boolean().default(false),
});

function machineFrom(args: z.infer<typeof argsSchema>): EmulatedMachine {
  const qmpSocketPath = args['qmp-socket'];
  const startCommand = args['start-command'];
  if (args.machine === 'fake') return new FakeMachine();
  if (!qmpSocketPath || !startCommand) throw new Error('--machine qmp needs --qmp-socket and --start-command');
  return new QmpMachine({
    qmpSocketPath,
    startQemu: async (bootOverride: BootOverride) => {
      await execFileAsync('sh', ['-c', startCommand], {
        env: {
          ...process.env,
          BOOT_TARGET: bootOverride.target,
          BOOT_ENABLED: bootOverride.enabled,
          BOOT_MODE: bootOverride.mode,
        },
      });
    },
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      'system-id': { type: 'string' },
      machine: { type: 'string' },
      'qmp-socket': { type: 'string' },
      'start-command': { type: 'string' },
      'reset-types': { type: 'string' },
      'reset-types-via': { type: 'string' },
      'no-sessions': { type: 'boolean' },
      etag: { type: 'string' },
      'reset-task-polls': { type: 'string' },
      tls: { type: 'boolean' },
    },
    strict: true,
  });
  const parsed = argsSchema.safeParse(values);
  if (!parsed.success) {
    console.error(`redfish-bmc: ${z.prettifyError(parsed.error)}`);
    process.exit(2);
  }
  const args = parsed.data;
  const resetTaskPolls = args['reset-task-polls'];
  const bmc = await startRedfishBmc({
    port: args.port,
    username: args.username,
    password: args.password,
    systems: [
      {
        id: args['system-id'],
        machine: machineFrom(args),
        ...(args['reset-types'] ? { resetTypes: args['reset-types'] } : {}),
      },
    ],
    sessions: !args['no-sessions'],
    etag: args.etag,
    resetTypesVia: args['reset-types-via'],
    ...(resetTaskPolls === undefined ? {} : { resetTask: { pollsBeforeDone: resetTaskPolls } }),
    tls: args.tls,
  });
  console.log(JSON.stringify({ url: bmc.url, port: bmc.port, certificateFingerprintSha256: bmc.certificateFingerprintSha256 }));
  const stop = () => {
    bmc.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`redfish-bmc: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  console.error(`redfish-bmc: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
