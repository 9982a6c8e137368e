// Registers the agent module from its configuration options.
import { z } from 'zod';
import { AgentModule, defaultLostAfterMs } from './module.js';

const AgentOptionsSchema = z
  .object({
    /** Seconds between heartbeats (PROTOCOL.md allows 1..3600). */
    intervalSeconds: z.number().int().min(1).max(3600).default(10),
    /** Silence before a live node is observed as run=lost; default 3 × interval + 15 s. */
    lostAfterMs: z.number().int().positive().optional(),
  })
  .strict()
  .refine((o) => o.lostAfterMs === undefined || o.lostAfterMs > o.intervalSeconds * 1000, 'lostAfterMs must exceed the heartbeat interval, or every node is lost between two heartbeats');

export function createModule(options: Record<string, unknown> = {}): AgentModule {
  const parsed = AgentOptionsSchema.parse(options);
  return new AgentModule({ intervalSeconds: parsed.intervalSeconds, lostAfterMs: parsed.lostAfterMs ?? defaultLostAfterMs(parsed.intervalSeconds) });
}

export { AgentModule, type AgentModuleOptions, type AgentStatus } from './module.js';
