// The IPMI module: owns the power facet of nodes whose BMC is ipmi://, through our RMCP+ client.
// One UDP socket serves every BMC; each node keeps one session, reused across commands.
import { lookup } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { BmcPowerModule, type BmcConnector, type BmcSession } from '../../src/drivers/bmc-power.js';
import { BmcModuleOptionsSchema, bmcPowerOptionsOf, resolveBmcCredentials } from '../../src/contracts/bmc.js';
import type { NodeRecord } from '../../src/domain/node.js';
import { IpmiClient } from './client.js';
import { IpmiTransport } from './transport.js';

const IpmiModuleOptionsSchema = BmcModuleOptionsSchema.extend({
  /** Address the module's UDP socket binds: the head node's address on the BMC network. */
  bindAddress: z.string().default('0.0.0.0'),
  timeoutMs: z.number().int().positive().default(2_000),
  retries: z.number().int().min(0).max(10).default(3),
  cipherSuite: z.union([z.literal(3), z.literal(17), z.literal('auto')]).default('auto'),
}).strict();

export class IpmiConnector implements BmcConnector {
  private transport: Promise<IpmiTransport> | undefined;

  constructor(private readonly options: z.infer<typeof IpmiModuleOptionsSchema>) {}

  claims(node: NodeRecord): boolean {
    return node.bmc.scheme === 'ipmi';
  }

  async connect(node: NodeRecord, password: string | undefined): Promise<BmcSession> {
    const credentials = resolveBmcCredentials('IPMI', node, password, this.options);
    // Replies are matched on the sender's address, so the client needs the BMC's literal IPv4.
    const host = isIPv4(node.bmc.host) ? node.bmc.host : (await lookup(node.bmc.host, { family: 4 })).address;
    this.transport ??= IpmiTransport.open(this.options.bindAddress);
    const client = new IpmiClient({
      host,
      ...(node.bmc.port ? { port: node.bmc.port } : {}),
      ...credentials,
      timeoutMs: this.options.timeoutMs,
      retries: this.options.retries,
      cipherSuite: this.options.cipherSuite,
      transport: await this.transport,
    });
    return {
      powerState: async () => (await client.getChassisStatus()).power,
      powerOn: () => client.chassisControl('on'),
      softOff: () => client.chassisControl('soft-off'),
      forceOff: () => client.chassisControl('off'),
      setNextBoot: (device, firmware) => client.setBootDevice({ device, persistent: false, efi: firmware === 'uefi' }),
      close: () => client.close(),
    };
  }

  async close(): Promise<void> {
    if (this.transport) await (await this.transport).close();
  }
}

export function createModule(options: Record<string, unknown>): BmcPowerModule {
  const parsed = IpmiModuleOptionsSchema.parse(options);
  return new BmcPowerModule('ipmi', new IpmiConnector(parsed), bmcPowerOptionsOf(parsed));
}
