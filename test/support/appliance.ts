// An appliance in the test's own process: temporary data directory, simulated rack, loopback API.
// Plain HTTP with the node routes on the API's listener unless a test asks for TLS (api.tls) or a
// boot listener: most tests fetch both from appliance.url.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Appliance } from '../../src/appliance.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import type { ExecutorOptions } from '../../src/engine/executor.js';
import { SimRack, type SimOptions } from '../../modules/sim/sim.js';
import type { NodeSpec } from '../../src/domain/node.js';
import type { ShoalModule } from '../../src/engine/module.js';
import type { ShoalConfig } from '../../src/config.js';

export interface TestAppliance {
  appliance: Appliance;
  sim: SimRack;
  dataDir: string;
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
  close(): Promise<void>;
}

export async function startTestAppliance(
  opts: {
    sim?: SimOptions;
    engine?: Partial<ExecutorOptions>;
    dataDir?: string;
    /** Loaded after the simulated rack. */
    modules?: ShoalModule[];
    tls?: ShoalConfig['api']['tls'];
    boot?: { port: number };
  } = {},
): Promise<TestAppliance> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'shoal-test-'));
  const config = loadConfig(undefined, {
    dataDir,
    api: { listen: '127.0.0.1', port: 0, tls: opts.tls ?? 'off' },
    ...(opts.boot ? { boot: { listen: '127.0.0.1', ...opts.boot } } : {}),
    engine: opts.engine as never,
  });
  const sim = new SimRack(opts.sim ?? {});
  const appliance = await Appliance.start(config, { modules: [sim, ...(opts.modules ?? [])], log: createLogger('silent') });
  return {
    appliance,
    sim,
    dataDir,
    async api(method, path, body, headers = {}) {
      const res = await fetch(`${appliance.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${appliance.token}`,
          ...(body !== undefined ? { 'content-type': typeof body === 'string' ? 'application/yaml' : 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON; keep the text
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async close() {
      const problems = await appliance.stop();
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
      if (problems.length > 0) throw new Error(`the test appliance did not stop cleanly: ${problems.join('; ')}`);
    },
  };
}

export function simSpecs(count: number, prefix = 'n'): NodeSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `${prefix}${String(i + 1).padStart(4, '0')}`,
    macs: [`52:54:00:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`],
    bmc: { scheme: 'sim' as const, host: `bmc-${prefix}${i}` },
    arch: 'x86_64' as const,
    firmware: 'auto' as const,
    labels: { rack: `r${Math.floor(i / 10)}` },
  }));
}

/** Resolves when `check` is true, re-checking on every committed event batch; rejects after `ms`. */
export function until(appliance: Appliance, check: () => boolean, ms = 20_000, what = 'condition'): Promise<void> {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const timer = setTimeout(() => {
      appliance.state.off('events', onEvents);
      clearInterval(poll);
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      clearInterval(poll);
      appliance.state.off('events', onEvents);
      resolve();
    };
    const onEvents = () => check() && done();
    // Phases also change without events (a step confirmed by re-planning): look now and then too.
    const poll = setInterval(() => check() && done(), 50);
    appliance.state.on('events', onEvents);
  });
}
