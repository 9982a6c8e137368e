// The appliance's configuration: YAML validated at the edge, embedded defaults for everything, so
// `shoal serve` with no file runs on SQLite with the built-in servers.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { formatZodIssues } from './domain/zod-issues.js';

const ModuleEntry = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]*$/, 'a module name is lowercase letters, digits and dashes'),
    options: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

export const ConfigSchema = z
  .object({
    dataDir: z.string().default('./data'),
    api: z
      .object({
        listen: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        /** Also serve the API on this unix socket (same token), e.g. for a port forward into a network namespace. */
        socket: z.string().min(1).optional(),
        /**
         * HTTPS for the operator API: `auto` makes a self-signed certificate at first start (kept in
         * DATA/tls), `{ cert, key }` uses the operator's PEM files, `off` serves plain HTTP. Off by
         * default: the embedded defaults listen on loopback only (scripts/up, tests); a real
         * install (the Ansible role) renders `auto` or a certificate.
         */
        tls: z
          .union([z.literal('auto'), z.literal('off'), z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict()])
          .default('off'),
      })
      .strict()
      .prefault({}),
    /**
     * Where the cluster's state is kept: the embedded SQLite file (DATA/shoal.db), or a PostgreSQL
     * database that several appliances can share (src/state/postgres-store.ts).
     */
    state: z
      .discriminatedUnion('backend', [
        z.object({ backend: z.literal('sqlite') }).strict(),
        z
          .object({
            backend: z.literal('postgres'),
            url: z
              .string({ error: 'backend postgres needs a url: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or postgresql://USER@/DATABASE?host=/SOCKET/DIR' })
              .regex(/^postgres(ql)?:\/\/\S+$/, 'a PostgreSQL URL starts with postgresql:// (postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE)'),
          })
          .strict(),
      ])
      .default({ backend: 'sqlite' }),
    /**
     * Who this appliance is among those sharing a PostgreSQL store: its name (its lease's), the
     * provisioning networks whose nodes are its own, and the appliance it stands by for (whose
     * nodes it takes over when that one's lease expires). On SQLite one appliance owns every node.
     */
    appliance: z
      .object({
        name: z
          .string()
          .regex(/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/, 'an appliance name is 1-63 lowercase letters, digits, dots or dashes, not starting or ending with a dot or dash')
          .default(() => hostname().toLowerCase()),
        /** CIDRs; a node whose address is in one belongs to this appliance (default: every address). */
        networks: z
          .array(z.union([z.cidrv4(), z.cidrv6()], { error: 'a network is a CIDR, e.g. 10.0.0.0/24 or fd00::/64' }))
          .min(1, 'an appliance serves at least one network (default: 0.0.0.0/0 and ::/0)')
          .default(['0.0.0.0/0', '::/0']),
        standbyFor: z.string().min(1).optional(),
        /** How long a lease lasts unrenewed, by the database's clock; renewed every third of it. */
        leaseTtlMs: z.number().int().min(300).default(15_000),
      })
      .strict()
      .prefault({}),
    secrets: z
      .object({
        /** The key that seals BMC passwords in the store (default DATA/secret.key): keep it where a copy of the data directory does not go. */
        keyFile: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /**
     * The plain-HTTP listener for what nodes fetch (iPXE scripts, kernels, images, agent calls):
     * firmware and iPXE cannot be relied on for TLS. Without it the node routes share the API's
     * listener, which only a plain-HTTP API can do; with api.tls on it defaults to port 80 on
     * the API's address (UEFI HTTP boot is handed URLs without a port).
     */
    boot: z
      .object({
        /** Defaults to api.listen. */
        listen: z.string().min(1).optional(),
        port: z.number().int().min(0).max(65535).default(80),
      })
      .strict()
      .optional(),
    log: z.object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).strict().prefault({}),
    engine: z
      .object({
        retryBudget: z.number().int().min(0).default(5),
        backoffBaseMs: z.number().int().min(0).default(2_000),
        backoffMaxMs: z.number().int().min(0).default(300_000),
        limits: z.record(z.string(), z.number().int().min(1)).default({}),
        timeouts: z.record(z.string(), z.number().int().min(1)).default({}),
      })
      .strict()
      .prefault({}),
    /** Hardware modules, in priority order: the first that claims a node's facet owns it. */
    modules: z.array(ModuleEntry).default([{ name: 'sim', options: {} }]),
  })
  .strict()
  .superRefine((config, ctx) => {
    if (config.appliance.standbyFor === config.appliance.name) {
      ctx.addIssue({ code: 'custom', path: ['appliance', 'standbyFor'], message: `an appliance cannot stand by for itself (${config.appliance.name})` });
    }
    if (config.appliance.standbyFor !== undefined && config.state.backend !== 'postgres') {
      ctx.addIssue({ code: 'custom', path: ['appliance', 'standbyFor'], message: 'a standby shares the state of the appliance it stands by for: it needs state.backend postgres' });
    }
    const boot = bootListener(config);
    if (boot && boot.port !== 0 && boot.port === config.api.port && boot.listen === config.api.listen) {
      ctx.addIssue({ code: 'custom', path: ['boot', 'port'], message: `the node routes need a port of their own: ${boot.port} is api.port` });
    }
  });

export type ShoalConfig = z.infer<typeof ConfigSchema>;

/** Where the node routes are served: a listener of their own, or (undefined) the API's. */
export function bootListener(config: Pick<ShoalConfig, 'api' | 'boot'>): { listen: string; port: number } | undefined {
  if (!config.boot && config.api.tls === 'off') return undefined;
  return { listen: config.boot?.listen ?? config.api.listen, port: config.boot?.port ?? 80 };
}

export function loadConfig(path: string | undefined, overrides: Partial<z.input<typeof ConfigSchema>> = {}): ShoalConfig {
  let raw: unknown = {};
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`cannot read config ${path}: ${(err as Error).message}`);
    }
    raw = parseYaml(text) ?? {};
  }
  const result = ConfigSchema.safeParse({ ...(raw as object), ...overrides });
  if (!result.success) {
    throw new Error(`config${path ? ` ${path}` : ''} is invalid:\n  ${formatZodIssues(result.error).join('\n  ')}`);
  }
  return result.data;
}
