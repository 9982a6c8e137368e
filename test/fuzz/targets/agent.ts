// Agent bodies as a node, a broken agent or anyone on the provisioning network could post them,
// through the agent module's own routes in a real Appliance on loopback: hello, heartbeat and
// drained bodies mutated field by field, broken and oversized JSON, odd content types, and
// tokens that are missing, malformed, another node's or valid. Every request must be answered
// 200 or refused with a 4xx and the module's reason, never a 500 or a dropped connection.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Appliance } from '../../../src/appliance.js';
import { loadConfig } from '../../../src/config.js';
import { createLogger } from '../../../src/log.js';
import { createModule } from '../../../modules/agent/index.js';
import type { BootTokens } from '../../../src/contracts/services.js';
import type { ModuleHost, ShoalModule } from '../../../src/engine/module.js';
import { jsonText, mutateJson, type FuzzTarget, type Gen } from '../kit.js';

const BOOT_IDS = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222'];
const REFUSALS = new Set([400, 401, 409, 413, 415]);

function body(g: Gen, node: string, path: string): unknown {
  const bootId = g.pick(BOOT_IDS);
  const base =
    path === '/hello'
      ? { node, bootId, image: 'compute@1', bakedImage: g.chance(0.8) ? 'compute@1' : null, kernel: '6.1.0-test', uptime: 7.61, interfaces: [{ name: 'eth0', mac: '52:54:00:12:34:56', ipv4: ['10.0.0.23/24'] }] }
      : { node, bootId, uptime: 68.02, state: path === '/drained' ? 'drained' : g.pick(['running', 'draining', 'drained']) };
  return g.chance(0.4) ? base : mutateJson(g, base);
}

/** Finds the boot tokens service, as the pxe module does; drives nothing, so no node is ever planned. */
class TokenIssuer implements ShoalModule {
  readonly name = 'fuzz-token-issuer';
  private host: ModuleHost | undefined;
  start(host: ModuleHost): void {
    this.host = host;
  }
  get tokens(): BootTokens {
    const tokens = this.host?.services.get('bootTokens');
    if (!tokens) throw new Error('no module provides bootTokens');
    return tokens;
  }
}

export const agentFuzzTarget: FuzzTarget = {
  name: 'agent bodies',
  async open() {
    const dataDir = mkdtempSync(join(tmpdir(), 'shoal-agent-fuzz-'));
    const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
    const config = loadConfig(undefined, {
      dataDir,
      api: { listen: '127.0.0.1', port: 0 },
      engine: { retryBudget: 2, backoffBaseMs: 50, backoffMaxMs: 500, limits: {}, timeouts: {} },
    });
    const issuer = new TokenIssuer();
    const appliance = await Appliance.start(config, { modules: [issuer, createModule({ intervalSeconds: 1, lostAfterMs: 60_000 })], log: createLogger('fatal', discard) });
    const nodes = await appliance.state.addNodes(
      ['n1', 'n2', 'n3'].map((name, i) => ({ spec: { name, macs: [`52:54:00:ff:00:0${i + 1}`], bmc: { scheme: 'ipmi' as const, host: '127.0.0.1', port: 10_001 + i }, arch: 'x86_64' as const, firmware: 'bios' as const, labels: {} } })),
      'fuzz',
    );
    const tokens = nodes.map((node) => issuer.tokens.issue(node.id, 'compute@1'));
    return {
      async one(g) {
        const path = g.pick(['/hello', '/heartbeat', '/drained', '/hello', '/heartbeat']);
        const who = g.int(nodes.length);
        const claimed = g.chance(0.9) ? nodes[who]!.id : nodes[g.int(nodes.length)]!.id;
        const token = g.pick([tokens[who], tokens[who], tokens[who], tokens[g.int(tokens.length)], undefined, 'not a token', `${tokens[who]}x`, 'x'.repeat(600), '']);
        let text = jsonText(g, body(g, claimed, path));
        if (g.chance(0.02)) text = JSON.stringify({ node: claimed, pad: 'x'.repeat(70_000) });
        const headers: Record<string, string> = { 'content-type': g.chance(0.9) ? 'application/json' : g.pick(['text/plain', 'application/json; charset=latin1', 'application/x-www-form-urlencoded', '']) };
        if (token !== undefined) headers['authorization'] = g.chance(0.9) ? `Bearer ${token}` : g.pick([`bearer ${token}`, `Basic ${token}`, `Bearer  ${token}`, token]);
        const res = await fetch(`${appliance.url}/agent/v1${path}`, { method: 'POST', headers, body: text });
        const reply = await res.text();
        if (res.status === 200) {
          if (!/^interval=\d+\naction=(none|drain|reboot)\n$/.test(reply)) throw new Error(`200 with a reply the agent cannot read: ${JSON.stringify(reply)}`);
          return 'accepted';
        }
        // A body express never parsed (wrong content type) reaches the handler as no body: a 400 too.
        if (REFUSALS.has(res.status) && reply.endsWith('\n') && reply.length < 200) return 'refused';
        throw new Error(`POST ${path} answered ${res.status} ${JSON.stringify(reply.slice(0, 200))} to ${JSON.stringify(text.slice(0, 200))}`);
      },
      async close() {
        await appliance.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  },
};
