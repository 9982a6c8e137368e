// The Redfish module: owns the power facet of nodes whose BMC is redfish:// (HTTPS) or
// redfish+http:// (emulators), through our Redfish client.
import type { Logger } from 'pino';
import { z } from 'zod';
import { BmcPowerModule, type BmcConnector, type BmcPowerState, type BmcSession } from '../../src/engine/bmc-power.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { RedfishClient, type RedfishPowerState } from './client.js';

const RedfishModuleOptionsSchema = z
  .object({
    defaultUsername: z.string().optional(),
    defaultPassword: z.string().optional(),
    requestTimeoutMs: z.number().int().positive().default(10_000),
    pollMs: z.number().int().positive().optional(),
    fastPollMs: z.number().int().positive().optional(),
    gracefulOffMs: z.number().int().positive().optional(),
    forcedOffMs: z.number().int().positive().optional(),
    maxConcurrent: z.number().int().positive().optional(),
  })
  .strict();

/** A paused system is powered (its CPUs are halted, not off). */
const POWER: Record<RedfishPowerState, BmcPowerState> = { On: 'on', PoweringOff: 'powering-off', Paused: 'on', Off: 'off', PoweringOn: 'powering-on' };

export class RedfishConnector implements BmcConnector {
  constructor(private readonly options: z.infer<typeof RedfishModuleOptionsSchema>) {}

  claims(node: NodeRecord): boolean {
    return node.bmc.scheme === 'redfish' || node.bmc.scheme === 'redfish+http';
  }

  async connect(node: NodeRecord, password: string | undefined, log: Logger): Promise<BmcSession> {
    const { bmc } = node;
    const username = bmc.username ?? this.options.defaultUsername;
    const secret = password ?? this.options.defaultPassword;
    if (!username || secret === undefined) throw new Error(`no Redfish credentials for ${node.name}: put the user in its BMC URL and set its BMC password`);
    const host = bmc.host.includes(':') ? `[${bmc.host}]` : bmc.host;
    const client = await RedfishClient.connect({
      url: `${bmc.scheme}://${host}${bmc.port ? `:${bmc.port}` : ''}${bmc.path ?? ''}`,
      username,
      password: secret,
      insecure: bmc.insecure ?? false,
      requestTimeoutMs: this.options.requestTimeoutMs,
    });
    return {
      powerState: async () => {
        const state = await client.getPowerState();
        return state === undefined ? 'unknown' : POWER[state];
      },
      powerOn: async () => void (await client.reset('on')),
      softOff: async () => void (await client.reset('graceful-off')),
      forceOff: async () => void (await client.reset('off')),
      setNextBoot: async (device, firmware) => {
        const mode = firmware === 'auto' ? undefined : firmware === 'uefi' ? 'UEFI' : 'Legacy';
        const set = await client.setBootOverride({ target: device === 'pxe' ? 'Pxe' : 'Hdd', enabled: 'Once', ...(mode ? { mode } : {}) });
        if (mode && set.mode === undefined) {
          log.info({ node: node.name, mode }, 'BMC has no BootSourceOverrideMode; next boot set without a mode (the machine boots in the mode it is set to)');
        }
      },
      close: () => client.close(),
    };
  }
}

export function createModule(options: Record<string, unknown>): BmcPowerModule {
  const parsed = RedfishModuleOptionsSchema.parse(options);
  return new BmcPowerModule('redfish', new RedfishConnector(parsed), {
    ...(parsed.pollMs ? { pollMs: parsed.pollMs } : {}),
    ...(parsed.fastPollMs ? { fastPollMs: parsed.fastPollMs } : {}),
    ...(parsed.gracefulOffMs ? { gracefulOffMs: parsed.gracefulOffMs } : {}),
    ...(parsed.forcedOffMs ? { forcedOffMs: parsed.forcedOffMs } : {}),
    ...(parsed.maxConcurrent ? { maxConcurrent: parsed.maxConcurrent } : {}),
  });
}
