// Registers the simulated rack from its configuration options.
import { z } from 'zod';
import { SimRack } from './sim.js';

const SimOptionsSchema = z
  .object({
    latencies: z
      .object({
        probeMs: z.number().min(0),
        powerMs: z.number().min(0),
        armMs: z.number().min(0),
        bootStageMs: z.number().min(0),
        postMs: z.number().min(0),
        kexecMs: z.number().min(0),
        drainMs: z.number().min(0),
        lostAfterMs: z.number().min(0),
        bmcTimeoutMs: z.number().min(0),
      })
      .partial()
      .strict()
      .optional(),
    initialPower: z.enum(['on', 'off']).optional(),
    kexec: z.boolean().optional(),
    persist: z.boolean().optional(),
  })
  .strict();

export function createModule(options: Record<string, unknown>): SimRack {
  const parsed = SimOptionsSchema.parse(options);
  return new SimRack({
    ...(parsed.latencies ? { latencies: parsed.latencies } : {}),
    ...(parsed.initialPower ? { initialPower: parsed.initialPower } : {}),
    ...(parsed.kexec !== undefined ? { kexec: parsed.kexec } : {}),
    // Configured racks outlive appliance restarts, as hardware does.
    persist: parsed.persist ?? true,
  });
}
