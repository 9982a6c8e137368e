// Agent bodies as a node, a broken agent or anyone on the provisioning network could post them,
// through the agent module's own routes in a real Appliance on loopback: hello, heartbeat and
// drained bodies mutated field by field, broken and oversized JSON, odd content types, and
// tokens (in the body, as protocol 2 sends them) that are missing, malformed, another node's,
// superseded, a spent bootstrap, a version 1 bearer header, or valid: the armed boot's bootstrap
// until a hello spends it, then the boot token that hello's reply carried. Every request must be
// answered 200 or refused with a 4xx and the module's reason, never a 500 or a dropped connection.
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
import type { NodeId } from '../../../src/domain/node.js';
import { jsonText, mutateJson, type FuzzTarget, type Gen } from '../kit.js';

const BOOT_IDS = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222'];
const REFUSALS = new Set([400, 401, 409, 413, 415]);

const TOKEN_LINE = /^token=[A-Za-z0-9._~+/=-]+$/;
/** A 200 reply as the agent reads it: interval and action, and a boot token only after a hello. */
const REPLY = /^interval=\d+\naction=(none|drain|reboot)\n(token=[A-Za-z0-9._~+/=-]+\n)?$/;

/** The body, token first as the agent sends it (absent when `token` is undefined), mutated most of the time. */
function body(g: Gen, node: string, path: string, bootId: string, token: unknown): unknown {
  const fields =
    path === '/hello'
      ? { node, bootId, image: 'compute@1', bakedImage: g.chance(0.8) ? 'compute@1' : null, kernel: '6.1.0-test', uptime: 7.61, interfaces: [{ name: 'eth0', mac: '52:54:00:12:34:56', ipv4: ['10.0.0.23/24'] }] }
      : { node, bootId, uptime: 68.02, state: path === '/drained' ? 'drained' : g.pick(['running', 'draining', 'drained']) };
  const base = token === undefined ? fields : { token, ...fields };
  return g.chance(0.4) ? base : mutateJson(g, base);
}

/** A node's armed boot as the fuzzer knows it: its bootstrap and, once a hello spent it, the boot token and boot. */
interface Boot {
  bootstrap: string;
  bootToken?: string;
  bootId?: string;
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
  /** Arms a network boot as the pxe module does (a bootstrap for it, then boot=armed); returns the bootstrap. */
  arm(id: NodeId): string {
    const bootstrap = this.tokens.issue(id, 'compute@1');
    this.host!.observe(id, 'boot', 'armed', 'compute@1');
    return bootstrap;
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
    const boots: Boot[] = nodes.map((node) => ({ bootstrap: issuer.arm(node.id) }));
    /** Tokens of armings since superseded by a newer one. */
    const superseded: string[] = [];
    return {
      async one(g) {
        const path = g.pick(['/hello', '/heartbeat', '/drained', '/hello', '/heartbeat']);
        const who = g.int(nodes.length);
        // Now and then the node is armed again: its bootstrap and boot token are superseded.
        if (g.chance(0.02)) {
          const old = boots[who]!;
          superseded.push(old.bootstrap, ...(old.bootToken ? [old.bootToken] : []));
          boots[who] = { bootstrap: issuer.arm(nodes[who]!.id) };
        }
        const boot = boots[who]!;
        const valid = boot.bootToken ?? boot.bootstrap;
        const claimed = g.chance(0.9) ? nodes[who]!.id : nodes[g.int(nodes.length)]!.id;
        // The boot that spent the bootstrap most of the time, another boot (a reboot, a thief) now and then.
        const bootId = boot.bootId !== undefined && g.chance(0.8) ? boot.bootId : g.pick(BOOT_IDS);
        const other = boots[g.int(boots.length)]!;
        // Valid two times in five, so enough requests get past the token to reach the body checks.
        const token: unknown = g.pick([
          ...Array<string>(6).fill(valid),
          boot.bootstrap, // spent once a boot token exists
          other.bootToken ?? other.bootstrap,
          superseded.length > 0 ? g.pick(superseded) : valid,
          undefined,
          'not a token',
          `${valid}x`,
          'x'.repeat(600),
          '',
          42,
        ]);
        // A version 1 agent: the token in a bearer header, none in the body.
        const bearer = token !== undefined && g.chance(0.05);
        let text = jsonText(g, body(g, claimed, path, bootId, bearer ? undefined : token));
        if (g.chance(0.02)) text = JSON.stringify({ token, node: claimed, pad: 'x'.repeat(70_000) });
        const headers: Record<string, string> = { 'content-type': g.chance(0.9) ? 'application/json' : g.pick(['text/plain', 'application/json; charset=latin1', 'application/x-www-form-urlencoded', '']) };
        if (bearer) headers['authorization'] = `Bearer ${String(token)}`;
        const res = await fetch(`${appliance.url}/agent/v1${path}`, { method: 'POST', headers, body: text });
        const reply = await res.text();
        if (res.status === 200) {
          if (!REPLY.test(reply)) throw new Error(`200 with a reply the agent cannot read: ${JSON.stringify(reply)}`);
          const line = reply.split('\n').find((l) => TOKEN_LINE.test(l));
          if (line !== undefined) {
            if (path !== '/hello') throw new Error(`POST ${path} handed out a boot token: ${JSON.stringify(reply)}`);
            // An accepted hello spent its node's bootstrap: its boot token is the valid one from now on.
            const sent = JSON.parse(text) as { node: NodeId; bootId: string };
            const i = nodes.findIndex((n) => n.id === sent.node);
            boots[i] = { bootstrap: boots[i]!.bootstrap, bootToken: line.slice('token='.length), bootId: sent.bootId };
          }
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
