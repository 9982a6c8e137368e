// The Redfish module: owns the power facet of nodes whose BMC is redfish:// (HTTPS) or
// redfish+http:// (emulators), through our Redfish client.
import type { Logger } from 'pino';
import { z } from 'zod';
import { BmcPowerModule, type BmcConnector, type BmcPowerState, type BmcSession } from '../../src/drivers/bmc-power.js';
import { BmcModuleOptionsSchema, bmcPowerOptionsOf, resolveBmcCredentials } from '../../src/contracts/bmc.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { RedfishClient, type RedfishPowerState } from './client.js';

const RedfishModuleOptionsSchema = BmcModuleOptionsSchema.extend({
  requestTimeoutMs: z.number().int().positive().default(10_000),
}).strict();

/** A paused system is powered (its CPUs are halted, not off). */
const POWER: Record<RedfishPowerState, BmcPowerState> = { On: 'on', PoweringOff: 'powering-off', Paused: 'on', Off: 'off', PoweringOn: 'powering-on' };

export class RedfishConnector implements BmcConnector {
  constructor(private readonly options: z.infer<typeof RedfishModuleOptionsSchema>) {}

  claims(node: NodeRecord): boolean {
    return node.bmc.scheme === 'redfish' || node.bmc.scheme === 'redfish+http';
  }

  async connect(node: NodeRecord, password: string | undefined, log: Logger): Promise<BmcSession> {
    const { bmc } = node;
    const credentials = resolveBmcCredentials('Redfish', node, password, this.options);
    const host = bmc.host.includes(':') ? `[${bmc.host}]` : bmc.host;
    const client = await RedfishClient.connect({
      url: `${bmc.scheme}://${host}${bmc.port ? `:${bmc.port}` : ''}${bmc.path ?? ''}`,
      ...credentials,
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
  return new BmcPowerModule('redfish', new RedfishConnector(parsed), bmcPowerOptionsOf(parsed));
}
