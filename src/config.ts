// The appliance's configuration: YAML validated at the edge, embedded defaults for everything, so
// `shoal serve` with no file runs on SQLite with the built-in servers.
import { readFileSync } from 'node:fs';
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
  .strict();

export type ShoalConfig = z.infer<typeof ConfigSchema>;

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
