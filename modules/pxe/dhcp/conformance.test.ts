// Our server against real DHCP clients (busybox udhcpc, ISC dhclient) over a veth pair
// between two network namespaces this test creates. The server runs as its own process
// (test/support/dhcp-serve.ts) in one namespace, the clients in the other.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Netns } from '../../../test/support/netns.js';
import { requirements, skipUnless } from '../../../test/support/environment.js';
import { MessageType, decodeSubOptions } from './codec.js';
import type { DhcpServerConfigInput } from './config.js';

const ROOT = join(import.meta.dirname, '../../..');
const SERVER_IP = '10.88.0.1';
const CLIENT_IF = 'shc0';
const SERVER_IF = 'shd0';

const requirement = requirements({ root: true, commands: ['ip', 'udhcpc', 'dhclient'] });
const skip = skipUnless('DHCP conformance (udhcpc, dhclient in network namespaces)', requirement);

interface RunningServer {
  process: ChildProcess;
  lines: unknown[];
  stderr: string[];
}

async function until<T>(what: string, probe: () => T | undefined, deadlineMs = 15_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function startServer(ns: Netns, specPath: string): RunningServer {
  const child = ns.spawn('npx', ['tsx', join(ROOT, 'test/support/dhcp-serve.ts'), specPath], { cwd: ROOT, stdio: 'pipe' });
  const running: RunningServer = { process: child, lines: [], stderr: [] };
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    for (const line of parts) if (line.startsWith('{')) running.lines.push(JSON.parse(line));
  });
  child.stderr!.on('data', (chunk: Buffer) => running.stderr.push(chunk.toString()));
  return running;
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

/** Key=value lines a client hook script wrote, as a record. */
function readEnv(path: string): Record<string, string> | undefined {
  if (!existsSync(path)) return undefined;
  return Object.fromEntries(
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe.skipIf(skip)('DHCP conformance with real clients', () => {
  let serverNs: Netns;
  let clientNs: Netns;
  let dir: string;
  let server: RunningServer;
  let leaseDb: string;

  const events = () => server.lines.flatMap((l) => ('event' in (l as object) ? [(l as { event: { type: string; mac: string; ip?: string } }).event] : []));
  const leaseRow = (mac: string) => {
    const db = new Database(leaseDb, { readonly: true, fileMustExist: true });
    try {
      return db.prepare('SELECT mac, ip, expires_at AS expiresAt FROM dhcp_leases WHERE mac = ?').get(mac) as
        | { mac: string; ip: string; expiresAt: number }
        | undefined;
    } finally {
      db.close();
    }
  };
  const setClientMac = (mac: string) => {
    clientNs.run('ip', ['addr', 'flush', 'dev', CLIENT_IF]);
    clientNs.run('ip', ['link', 'set', CLIENT_IF, 'down']);
    clientNs.run('ip', ['link', 'set', CLIENT_IF, 'address', mac]);
    clientNs.run('ip', ['link', 'set', CLIENT_IF, 'up']);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shdhcp-'));
    serverNs = Netns.create('shdhcp');
    clientNs = Netns.create('shdhcp');
    serverNs.link(clientNs, { ifname: SERVER_IF, cidr: `${SERVER_IP}/24` }, { ifname: CLIENT_IF });
    leaseDb = join(dir, 'leases.db');
    const config: DhcpServerConfigInput = {
      mode: 'full',
      interface: { name: SERVER_IF, address: SERVER_IP },
      subnets: [{ cidr: '10.88.0.0/24', router: '10.88.0.254', dnsServers: ['10.88.0.53'], pool: { start: '10.88.0.100', end: '10.88.0.199' } }],
      leaseSeconds: 900,
    };
    const spec = { config, leaseDb, events: true, reservations: { '02:00:00:88:00:21': { ip: '10.88.0.21', hostname: 'n21' } } };
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
    // Client hook: record what the client was told (renamed into place, as the test polls for
    // the file), and configure the address so the client can RELEASE.
    const hook = join(dir, 'hook.sh');
    writeFileSync(
      hook,
      `#!/bin/sh
echo "$1$reason" >> "${dir}/$(cat /sys/class/net/${CLIENT_IF}/address | tr : -).log"
case "$1$reason" in
  bound|BOUND) env > "${dir}/env.tmp" && mv "${dir}/env.tmp" "${dir}/$(cat /sys/class/net/${CLIENT_IF}/address | tr : -).env"
    ip addr add "\${ip:-$new_ip_address}/24" dev ${CLIENT_IF} 2>/dev/null ;;
esac
exit 0
`,
    );
    chmodSync(hook, 0o755);
    server = startServer(serverNs, join(dir, 'spec.json'));
    await until('the server to be ready', () => (server.lines.some((l) => (l as { ready?: boolean }).ready) ? true : undefined), 30_000);
  });

  afterAll(async () => {
    if (server?.process.exitCode === null) {
      server.process.kill('SIGTERM');
      await Promise.race([exitOf(server.process), new Promise((r) => setTimeout(r, 3000))]);
    }
    clientNs?.destroy();
    serverNs?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('udhcpc gets the reserved address, router, mask, lease time and the T1/T2 it asks for, and the lease is persisted', async () => {
    const mac = '02:00:00:88:00:21';
    setClientMac(mac);
    // -O: udhcpc asks for the renewal (58) and rebinding (59) times and hands them to the hook as hex.
    clientNs.run('udhcpc', ['-f', '-q', '-n', '-i', CLIENT_IF, '-t', '4', '-T', '2', '-O', '58', '-O', '59', '-s', join(dir, 'hook.sh')]);
    const env = readEnv(join(dir, `${mac.replaceAll(':', '-')}.env`));
    expect(env).toMatchObject({ ip: '10.88.0.21', router: '10.88.0.254', subnet: '255.255.255.0', lease: '900', serverid: SERVER_IP, dns: '10.88.0.53' });
    // RFC 2131 4.4.5 defaults: T1 = 0.5 and T2 = 0.875 of the 900 s lease, 450 and 787 s.
    expect({ opt58: env?.opt58, opt59: env?.opt59 }).toEqual({ opt58: '000001c2', opt59: '00000313' });
    const row = leaseRow(mac);
    expect(row?.ip).toBe('10.88.0.21');
    expect(row!.expiresAt).toBeGreaterThan(Date.now() + 800_000);
    await until('the ACK event', () => (events().some((e) => e.mac === mac && e.type === 'ack') ? true : undefined));
    expect(events().filter((e) => e.mac === mac).map((e) => e.type)).toEqual(['discover', 'offer', 'request', 'ack']);
  });

  it('udhcpc: a pool address, a unicast renewal (SIGUSR1), then RELEASE on exit (-R) frees the persisted lease', async () => {
    const mac = '02:00:00:88:00:40';
    setClientMac(mac);
    const client = clientNs.spawn('udhcpc', ['-f', '-R', '-i', CLIENT_IF, '-t', '4', '-T', '2', '-s', join(dir, 'hook.sh')], { stdio: 'ignore' });
    try {
      const env = await until('udhcpc to bind', () => readEnv(join(dir, `${mac.replaceAll(':', '-')}.env`)));
      expect(env.ip).toMatch(/^10\.88\.0\.1\d\d$/);
      const firstExpiry = leaseRow(mac)!.expiresAt;
      client.kill('SIGUSR1');
      const log = join(dir, `${mac.replaceAll(':', '-')}.log`);
      await until('the renewal', () => (readFileSync(log, 'utf8').includes('renew') ? true : undefined));
      expect(leaseRow(mac)!.expiresAt).toBeGreaterThan(firstExpiry);
      client.kill('SIGTERM');
      await exitOf(client);
      await until('the RELEASE to be handled', () => (leaseRow(mac) === undefined ? true : undefined));
      await until('the release event', () => (events().some((e) => e.mac === mac && e.type === 'release') ? true : undefined));
    } finally {
      if (client.exitCode === null) client.kill('SIGKILL');
    }
  });

  it('dhclient gets a pool lease with router, lease time and T1/T2, and dhclient -r releases it', async () => {
    const mac = '02:00:00:88:00:50';
    setClientMac(mac);
    const args = ['-sf', join(dir, 'hook.sh'), '-lf', join(dir, 'dhclient.leases'), '-pf', join(dir, 'dhclient.pid'), CLIENT_IF];
    clientNs.run('timeout', ['30', 'dhclient', '-1', ...args]);
    const env = readEnv(join(dir, `${mac.replaceAll(':', '-')}.env`));
    expect(env).toMatchObject({
      new_routers: '10.88.0.254',
      new_subnet_mask: '255.255.255.0',
      new_dhcp_lease_time: '900',
      new_dhcp_renewal_time: '450',
      new_dhcp_rebinding_time: '787',
      new_dhcp_server_identifier: SERVER_IP,
    });
    expect(env?.new_ip_address).toMatch(/^10\.88\.0\.1\d\d$/);
    expect(leaseRow(mac)?.ip).toBe(env?.new_ip_address);
    clientNs.run('timeout', ['30', 'dhclient', '-r', ...args]);
    await until('the RELEASE to be handled', () => (leaseRow(mac) === undefined ? true : undefined));
  });

  it('a REQUEST naming another server gets no ACK, and our offer is forgotten', () => {
    const mac = '02:00:00:88:00:60';
    setClientMac('02:00:00:88:00:61');
    clientNs.run('ip', ['addr', 'add', '10.88.0.2/24', 'dev', CLIENT_IF]);
    clientNs.run('ip', ['route', 'replace', 'default', 'dev', CLIENT_IF]);
    const steps = [
      { mac, type: MessageType.DISCOVER, options: { requestedIp: '10.88.0.150' }, awaitReply: true },
      { mac, type: MessageType.REQUEST, options: { serverId: '10.88.0.99', requestedIp: '10.88.0.150' } },
      // Ours again for the same address: the offer is gone, so a NAK, which also proves the
      // foreign REQUEST was processed first (the server answers in order) and drew no reply.
      { mac, type: MessageType.REQUEST, options: { serverId: SERVER_IP, requestedIp: '10.88.0.150' }, awaitReply: true },
    ];
    writeFileSync(join(dir, 'steps.json'), JSON.stringify(steps));
    const replies = clientNs
      .run('npx', ['tsx', join(ROOT, 'test/support/dhcp-probe-client.ts'), join(dir, 'steps.json')])
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; type: number; yiaddr: string });
    expect(replies.map((r) => [r.step, r.type])).toEqual([
      [0, MessageType.OFFER],
      [2, MessageType.NAK],
    ]);
    expect(replies[0]!.yiaddr).toBe('10.88.0.150');
    expect(leaseRow(mac)).toBeUndefined();
  });

  it('refuses to start when the named interface does not own the address', async () => {
    const spec = JSON.parse(readFileSync(join(dir, 'spec.json'), 'utf8')) as { config: { interface: { name: string } } };
    spec.config.interface.name = 'lo';
    writeFileSync(join(dir, 'wrong-interface.json'), JSON.stringify(spec));
    const wrong = startServer(serverNs, join(dir, 'wrong-interface.json'));
    expect(await exitOf(wrong.process)).toBe(1);
    expect(wrong.stderr.join('')).toMatch(/interface lo does not have address 10\.88\.0\.1/);
  });

  it('a second server on the same address and port is refused with EADDRINUSE', async () => {
    const second = startServer(serverNs, join(dir, 'spec.json'));
    expect(await exitOf(second.process)).toBe(1);
    expect(second.stderr.join('')).toMatch(/EADDRINUSE/);
  });
});

describe.skipIf(skip)('ProxyDHCP conformance', () => {
  let serverNs: Netns;
  let clientNs: Netns;
  let dir: string;
  let server: RunningServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shdhcp-'));
    serverNs = Netns.create('shdhcp');
    clientNs = Netns.create('shdhcp');
    serverNs.link(clientNs, { ifname: SERVER_IF, cidr: `${SERVER_IP}/24` }, { ifname: CLIENT_IF, cidr: '10.88.0.2/24' });
    clientNs.run('ip', ['route', 'add', 'default', 'dev', CLIENT_IF]);
    const config: DhcpServerConfigInput = { mode: 'proxy', interface: { name: SERVER_IF, address: SERVER_IP } };
    writeFileSync(join(dir, 'spec.json'), JSON.stringify({ config }));
    server = startServer(serverNs, join(dir, 'spec.json'));
    await until('the server to be ready', () => (server.lines.some((l) => (l as { ready?: boolean }).ready) ? true : undefined), 30_000);
  });

  afterAll(() => {
    clientNs?.destroy();
    serverNs?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers PXE clients only, on port 67 and on 4011, with boot information and no address', () => {
    const pxe = { clientArch: [7], vendorClassId: 'PXEClient:Arch:00007:UNDI:003000' };
    const steps = [
      { mac: '02:00:00:88:00:70', type: MessageType.DISCOVER, options: { vendorClassId: 'udhcp 1.35.0' } },
      { mac: '02:00:00:88:00:71', type: MessageType.DISCOVER, options: pxe, awaitReply: true },
      { mac: '02:00:00:88:00:71', type: MessageType.REQUEST, options: pxe, ciaddr: '10.88.0.2', to: `${SERVER_IP}:4011`, awaitReply: true },
    ];
    writeFileSync(join(dir, 'steps.json'), JSON.stringify(steps));
    const replies = clientNs
      .run('npx', ['tsx', join(ROOT, 'test/support/dhcp-probe-client.ts'), join(dir, 'steps.json')])
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; type: number; yiaddr: string; siaddr: string; file: string; options: Record<string, unknown> });
    expect(replies.map((r) => [r.step, r.type])).toEqual([
      [1, MessageType.OFFER],
      [2, MessageType.ACK],
    ]);
    for (const reply of replies) {
      expect(reply).toMatchObject({ yiaddr: '0.0.0.0', siaddr: SERVER_IP, file: 'snponly.efi' });
      expect(reply.options).toMatchObject({ vendorClassId: 'PXEClient', serverId: SERVER_IP });
      expect(reply.options.leaseSeconds).toBeUndefined();
      const vendor = reply.options.vendorSpecific as { data: number[] };
      expect(decodeSubOptions(43, Buffer.from(vendor.data))).toEqual([{ code: 6, data: Buffer.from([8]) }]);
    }
  });
});
