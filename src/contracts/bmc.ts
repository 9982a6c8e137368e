// What the BMC protocol modules (ipmi, redfish) share of their configuration: the BMC power
// driver's timing options and the credentials a node without its own falls back on. Declared
// once here, so both modules accept these options with one meaning and one set of errors, and
// resolve a node's user and password by the same rule.
import { z } from 'zod';
import type { NodeRecord } from '../domain/node.js';

const milliseconds = z.number().int().positive();

/** The BMC power driver's timing and concurrency (src/drivers/bmc-power.ts has the defaults). */
export const BmcPowerOptionsSchema = z.object({
  /** Power poll of a node no step waits on. */
  pollMs: milliseconds,
  /** Power poll while a power step waits for confirmation. */
  fastPollMs: milliseconds,
  /** How long a graceful power-off may take before it is forced. */
  gracefulOffMs: milliseconds,
  /** How long a forced power-off may take to show before it is sent again. */
  forcedOffMs: milliseconds,
  /** BMC sessions in use at once, across all nodes of the module. */
  maxConcurrent: z.number().int().positive(),
});
export type BmcPowerOptions = z.infer<typeof BmcPowerOptionsSchema>;

/** The options every BMC module takes; a module extends it with its protocol's own and makes it strict. */
export const BmcModuleOptionsSchema = BmcPowerOptionsSchema.partial().extend({
  /** Used when a node's BMC URL names no user. */
  defaultUsername: z.string().min(1).optional(),
  /** Used when a node has no BMC password of its own. */
  defaultPassword: z.string().optional(),
});
export type BmcModuleOptions = z.infer<typeof BmcModuleOptionsSchema>;

const powerOptionNames = Object.keys(BmcPowerOptionsSchema.shape) as (keyof BmcPowerOptions)[];

/** The driver options a module's configuration sets; the driver's defaults stand for the rest. */
export function bmcPowerOptionsOf(options: BmcModuleOptions): Partial<BmcPowerOptions> {
  const set: Partial<BmcPowerOptions> = {};
  for (const name of powerOptionNames) {
    const value = options[name];
    if (value !== undefined) set[name] = value;
  }
  return set;
}

export interface BmcCredentials {
  username: string;
  password: string;
}

/**
 * A node's BMC user (from its BMC URL, else the module's default) and password (its own, else the
 * module's default). `protocol` names the module in the error when either is missing.
 */
export function resolveBmcCredentials(protocol: string, node: NodeRecord, password: string | undefined, options: BmcModuleOptions): BmcCredentials {
  const username = node.bmc.username ?? options.defaultUsername;
  const secret = password ?? options.defaultPassword;
  if (!username || secret === undefined) {
    const missing = [...(username ? [] : ['no user in its BMC URL']), ...(secret === undefined ? ['no BMC password'] : [])].join(' and ');
    throw new Error(
      `no ${protocol} credentials for ${node.name}: ${missing}; put the user in its BMC URL and set its BMC password, or set the module's defaultUsername and defaultPassword`,
    );
  }
  return { username, password: secret };
}
