// The server's decisions, with in-memory stores and a fake transport (no sockets).
import Database from 'better-sqlite3';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  BROADCAST_FLAG,
  IPXE_NO_PXEDHCP,
  MessageType,
  chaddrFromMac,
  decodeSubOptions,
  parseDhcpPacket,
  serializeDhcpPacket,
  type DhcpOptions,
  type DhcpPacket,
} from './codec.js';
import { DhcpConfigError, type DhcpServerConfigInput } from './config.js';
import { MemoryLeaseStore, SqliteLeaseStore, type LeaseStore } from './leases.js';
import type { AddressBook, DhcpEvent, DhcpHooks, Reservation, UnknownClientInfo } from './handler.js';
import { DhcpServer } from './server.js';
import type { Arrival, DhcpTransport, InboundDatagram } from './transport.js';

interface Sent {
  packet: DhcpPacket;
  /** The reply as it went on the wire. */
  wire: Buffer;
  address: string;
  port: number;
}

class FakeTransport implements DhcpTransport {
  sent: Sent[] = [];
  private handler: ((d: InboundDatagram) => void) | undefined;
  async open(onDatagram: (d: InboundDatagram) => void): Promise<void> {
    this.handler = onDatagram;
  }
  async send(data: Buffer, address: string, port: number): Promise<void> {
    const parsed = parseDhcpPacket(data);
    if (!parsed.ok) throw parsed.error;
    this.sent.push({ packet: parsed.packet, wire: data, address, port });
  }
  async close(): Promise<void> {
    this.handler = undefined;
  }
  deliverRaw(data: Buffer, arrival: Arrival = 'broadcast', from = { address: '0.0.0.0', port: 68 }): void {
    if (!this.handler) throw new Error('not open');
    this.handler({ data, from, arrival });
  }
  /** Delivers a request and returns what the server sent in response to it. */
  async exchange(packet: DhcpPacket, arrival: Arrival = 'broadcast', from?: { address: string; port: number }): Promise<Sent[]> {
    const before = this.sent.length;
    this.deliverRaw(serializeDhcpPacket(packet), arrival, from);
    await new Promise((resolve) => setImmediate(resolve));
    return this.sent.slice(before);
  }
}

class MapAddressBook implements AddressBook {
  readonly reservations = new Map<string, Reservation>();
  /** Clients another appliance acts on. */
  readonly others = new Set<string>();
  answers(mac: string): boolean {
    return !this.others.has(mac);
  }
  reservationFor(mac: string): Reservation | undefined {
    return this.reservations.get(mac);
  }
  isReserved(ip: string): boolean {
    return [...this.reservations.values()].some((r) => r.ip === ip);
  }
}

const SERVER = '10.0.0.1';
const BASE_CONFIG: DhcpServerConfigInput = {
  mode: 'full',
  interface: { name: 'eth1', address: SERVER },
  subnets: [
    { cidr: '10.0.0.0/24', router: '10.0.0.254', dnsServers: ['10.0.0.53'], domainName: 'cluster', pool: { start: '10.0.0.100', end: '10.0.0.102' } },
    { cidr: '10.1.0.0/24', router: '10.1.0.1', pool: { start: '10.1.0.50', end: '10.1.0.60' } },
  ],
  leaseSeconds: 600,
};

let xid = 1;
function request(mac: string, type: MessageType, options: DhcpOptions = {}, header: Partial<DhcpPacket> = {}): DhcpPacket {
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: xid++,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: chaddrFromMac(mac),
    sname: '',
    file: '',
    ...header,
    options: { messageType: type, ...options },
  };
}

const OVMF = { clientArch: [7], vendorClassId: 'PXEClient:Arch:00007:UNDI:003000', clientNdi: { type: 1, major: 3, minor: 0 } };
const BIOS_PXE = { clientArch: [0], vendorClassId: 'PXEClient:Arch:00000:UNDI:002001' };
const IPXE_BIOS = { ...BIOS_PXE, userClass: { format: 'raw' as const, value: 'iPXE' }, ipxe: [{ code: 0x13, data: Buffer.from([1]) }] };

interface Harness {
  server: DhcpServer;
  transport: FakeTransport;
  book: MapAddressBook;
  leases: LeaseStore;
  events: DhcpEvent[];
  unknown: Array<{ mac: string; info: UnknownClientInfo }>;
  clock: { now: number };
}

async function harness(config: DhcpServerConfigInput = BASE_CONFIG, leases: LeaseStore = new MemoryLeaseStore(), hooks: Pick<DhcpHooks, 'uefiX64FileFor'> = {}): Promise<Harness> {
  const transport = new FakeTransport();
  const book = new MapAddressBook();
  const events: DhcpEvent[] = [];
  const unknown: Harness['unknown'] = [];
  const clock = { now: 1_700_000_000_000 };
  const server = new DhcpServer(config, {
    addressBook: book,
    leases,
    transport,
    now: () => clock.now,
    onEvent: (e) => events.push(e),
    onUnknownClient: (mac, info) => unknown.push({ mac, info }),
    ...hooks,
  });
  await server.start();
  return { server, transport, book, leases, events, unknown, clock };
}

/** DISCOVER then REQUEST (selecting); returns the ACK. */
async function dora(h: Harness, mac: string, options: DhcpOptions = {}, header: Partial<DhcpPacket> = {}): Promise<DhcpPacket> {
  const [offer] = await h.transport.exchange(request(mac, MessageType.DISCOVER, options, header));
  expect(offer?.packet.options.messageType).toBe(MessageType.OFFER);
  const [ack] = await h.transport.exchange(
    request(mac, MessageType.REQUEST, { ...options, serverId: SERVER, requestedIp: offer!.packet.yiaddr }, header),
  );
  expect(ack?.packet.options.messageType).toBe(MessageType.ACK);
  return ack!.packet;
}

describe('DhcpServer in full mode', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });

  it('offers an unknown client a pool address with the subnet options, and reports it as discovered', async () => {
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER, { vendorClassId: 'udhcp 1.35.0', hostname: 'x' }));
    expect(offer).toMatchObject({ address: '255.255.255.255', port: 68 });
    const p = offer!.packet;
    expect(p.op).toBe(2);
    expect(p.yiaddr).toBe('10.0.0.100');
    expect(p.options).toMatchObject({
      messageType: MessageType.OFFER,
      serverId: SERVER,
      leaseSeconds: 600,
      subnetMask: '255.255.255.0',
      routers: ['10.0.0.254'],
      dnsServers: ['10.0.0.53'],
      domainName: 'cluster',
      broadcastAddress: '10.0.0.255',
    });
    // A plain client gets no boot options.
    expect(p.options.bootfileName).toBeUndefined();
    expect(p.options.vendorClassId).toBeUndefined();
    expect(h.unknown).toEqual([{ mac: '02:00:00:00:00:01', info: { arch: undefined, isIpxe: false, vendorClassId: 'udhcp 1.35.0', hostname: 'x' } }]);
    expect(h.events.map((e) => e.type)).toEqual(['discover', 'offer']);
    expect(h.leases.list()).toEqual([]); // an offer is not a lease
  });

  it('binds on REQUEST: ACK, lease stored with its expiry, events discover/offer/request/ack', async () => {
    const ack = await dora(h, '02:00:00:00:00:01');
    expect(ack.yiaddr).toBe('10.0.0.100');
    expect(ack.options.leaseSeconds).toBe(600);
    expect(h.leases.list()).toEqual([{ mac: '02:00:00:00:00:01', ip: '10.0.0.100', expiresAt: h.clock.now + 600_000 }]);
    expect(h.events.map((e) => e.type)).toEqual(['discover', 'offer', 'request', 'ack']);
    expect(h.server.counters).toMatchObject({ offers: 1, acks: 1, naks: 0 });
  });

  it('gives a reserved node its address and hostname, and does not report it as unknown', async () => {
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.21', hostname: 'n01' });
    const ack = await dora(h, '52:54:00:aa:bb:01');
    expect(ack.yiaddr).toBe('10.0.0.21');
    expect(ack.options.hostname).toBe('n01');
    expect(h.unknown).toEqual([]);
    expect(h.leases.get('52:54:00:aa:bb:01')).toMatchObject({ ip: '10.0.0.21', hostname: 'n01' });
  });

  it("stays silent for a node another appliance acts on, and answers it once it is this appliance's", async () => {
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.21', hostname: 'n01' });
    h.book.others.add('52:54:00:aa:bb:01');
    expect(await h.transport.exchange(request('52:54:00:aa:bb:01', MessageType.DISCOVER))).toEqual([]);
    expect(await h.transport.exchange(request('52:54:00:aa:bb:01', MessageType.REQUEST, { requestedIp: '10.0.0.21' }))).toEqual([]);
    expect(h.server.counters).toMatchObject({ ignored: 2, offers: 0, naks: 0 });
    expect(h.events).toEqual([]);
    h.book.others.delete('52:54:00:aa:bb:01');
    expect((await dora(h, '52:54:00:aa:bb:01')).yiaddr).toBe('10.0.0.21');
  });

  it('never hands a reserved address to a pool client', async () => {
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.100' });
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    expect(offer!.packet.yiaddr).toBe('10.0.0.101');
  });

  it('silently forgets its offer when the client selects another server', async () => {
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    const reply = await h.transport.exchange(
      request('02:00:00:00:00:01', MessageType.REQUEST, { serverId: '10.0.0.99', requestedIp: offer!.packet.yiaddr }),
    );
    expect(reply).toEqual([]);
    expect(h.server.counters.foreignServer).toBe(1);
    expect(h.leases.list()).toEqual([]);
    // The forgotten address is free again for the next client.
    const [next] = await h.transport.exchange(request('02:00:00:00:00:02', MessageType.DISCOVER, { requestedIp: offer!.packet.yiaddr }));
    expect(next!.packet.yiaddr).toBe(offer!.packet.yiaddr);
  });

  it('holds an offered address from other clients until the offer expires', async () => {
    await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    const [second] = await h.transport.exchange(request('02:00:00:00:00:02', MessageType.DISCOVER, { requestedIp: '10.0.0.100' }));
    expect(second!.packet.yiaddr).toBe('10.0.0.101');
    h.clock.now += 61_000;
    const [third] = await h.transport.exchange(request('02:00:00:00:00:03', MessageType.DISCOVER, { requestedIp: '10.0.0.100' }));
    expect(third!.packet.yiaddr).toBe('10.0.0.100');
  });

  it('NAKs a SELECTING request for an address it did not offer', async () => {
    await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    const [nak] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, { serverId: SERVER, requestedIp: '10.0.0.102' }));
    expect(nak!.packet.options.messageType).toBe(MessageType.NAK);
    expect(nak!.address).toBe('255.255.255.255');
    expect(nak!.packet.yiaddr).toBe('0.0.0.0');
  });

  it('INIT-REBOOT: ACKs the remembered address, NAKs a wrong one, stays silent without a record', async () => {
    await dora(h, '02:00:00:00:00:01');
    const [ack] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, { requestedIp: '10.0.0.100' }));
    expect(ack!.packet.options.messageType).toBe(MessageType.ACK);
    const [nak] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, { requestedIp: '10.0.0.101' }));
    expect(nak!.packet.options.messageType).toBe(MessageType.NAK);
    const [offNet] = await h.transport.exchange(request('02:00:00:00:00:09', MessageType.REQUEST, { requestedIp: '192.168.1.5' }));
    expect(offNet!.packet.options.messageType).toBe(MessageType.NAK);
    expect(await h.transport.exchange(request('02:00:00:00:00:09', MessageType.REQUEST, { requestedIp: '10.0.0.101' }))).toEqual([]);
    // Relayed from a network this server does not serve: silence, not a NAK.
    expect(
      await h.transport.exchange(request('02:00:00:00:00:09', MessageType.REQUEST, { requestedIp: '172.16.0.9' }, { giaddr: '172.16.0.1' }), 'unicast'),
    ).toEqual([]);
  });

  it('RENEWING: extends the lease and answers by unicast to ciaddr', async () => {
    await dora(h, '02:00:00:00:00:01');
    h.clock.now += 300_000;
    const [ack] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, {}, { ciaddr: '10.0.0.100' }), 'unicast', {
      address: '10.0.0.100',
      port: 68,
    });
    expect(ack).toMatchObject({ address: '10.0.0.100', port: 68 });
    expect(ack!.packet.options.messageType).toBe(MessageType.ACK);
    expect(ack!.packet.ciaddr).toBe('10.0.0.100');
    expect(h.leases.get('02:00:00:00:00:01')?.expiresAt).toBe(h.clock.now + 600_000);
  });

  it('REBINDING: answers only clients it has a record of', async () => {
    await dora(h, '02:00:00:00:00:01');
    const [ack] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, {}, { ciaddr: '10.0.0.100' }), 'broadcast');
    expect(ack!.packet.options.messageType).toBe(MessageType.ACK);
    expect(await h.transport.exchange(request('02:00:00:00:00:05', MessageType.REQUEST, {}, { ciaddr: '10.0.0.77' }), 'broadcast')).toEqual([]);
  });

  it('RELEASE frees the lease and the address goes to the next client', async () => {
    await dora(h, '02:00:00:00:00:01');
    expect(await h.transport.exchange(request('02:00:00:00:00:01', MessageType.RELEASE, { serverId: SERVER }, { ciaddr: '10.0.0.100' }), 'unicast')).toEqual([]);
    expect(h.leases.list()).toEqual([]);
    expect(h.server.counters.releases).toBe(1);
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:02', MessageType.DISCOVER, { requestedIp: '10.0.0.100' }));
    expect(offer!.packet.yiaddr).toBe('10.0.0.100');
  });

  it('ignores a RELEASE for an address the client does not hold', async () => {
    await dora(h, '02:00:00:00:00:01');
    await h.transport.exchange(request('02:00:00:00:00:02', MessageType.RELEASE, { serverId: SERVER }, { ciaddr: '10.0.0.100' }), 'unicast');
    expect(h.leases.list()).toHaveLength(1);
  });

  it('DECLINE keeps the address out of the pool', async () => {
    await dora(h, '02:00:00:00:00:01');
    await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DECLINE, { serverId: SERVER, requestedIp: '10.0.0.100' }));
    expect(h.leases.list()).toEqual([]);
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:02', MessageType.DISCOVER, { requestedIp: '10.0.0.100' }));
    expect(offer!.packet.yiaddr).not.toBe('10.0.0.100');
  });

  it("ignores a DECLINE for an address that is not the sender's own offer or lease (a forged one)", async () => {
    await dora(h, '02:00:00:00:00:01');
    await h.transport.exchange(request('02:00:00:00:00:02', MessageType.DISCOVER));
    // Neither a MAC with another offer nor one the server never saw may take 10.0.0.100 away.
    for (const forger of ['02:00:00:00:00:02', '02:00:00:00:00:66']) {
      await h.transport.exchange(request(forger, MessageType.DECLINE, { serverId: SERVER, requestedIp: '10.0.0.100' }));
    }
    expect(h.server.counters).toMatchObject({ declines: 0, ignored: 2 });
    expect(h.leases.get('02:00:00:00:00:01')?.ip).toBe('10.0.0.100');
    // The holder's renewal is still ACKed, and the forger's own offer still stands.
    const [renewal] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, {}, { ciaddr: '10.0.0.100' }), 'unicast');
    expect(renewal!.packet.options.messageType).toBe(MessageType.ACK);
    const [selected] = await h.transport.exchange(request('02:00:00:00:00:02', MessageType.REQUEST, { serverId: SERVER, requestedIp: '10.0.0.101' }));
    expect(selected!.packet.options.messageType).toBe(MessageType.ACK);
  });

  it('honours a DECLINE of the address the server offered that MAC', async () => {
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DECLINE, { serverId: SERVER, requestedIp: offer!.packet.yiaddr }));
    expect(h.server.counters.declines).toBe(1);
    const [next] = await h.transport.exchange(request('02:00:00:00:00:02', MessageType.DISCOVER, { requestedIp: offer!.packet.yiaddr }));
    expect(next!.packet.yiaddr).not.toBe(offer!.packet.yiaddr);
  });

  it('keeps only pool addresses out after a DECLINE, so the declined table is bounded by the pools', async () => {
    // Reserved addresses are outside the pool: a DECLINE drops the lease, but there is nothing to hold back.
    for (let n = 0; n < 200; n++) {
      const mac = `52:54:00:dd:00:${n.toString(16).padStart(2, '0')}`;
      const ip = `10.0.0.${(n % 90) + 2}`;
      h.book.reservations.clear();
      h.book.reservations.set(mac, { ip });
      await dora(h, mac);
      await h.transport.exchange(request(mac, MessageType.DECLINE, { serverId: SERVER, requestedIp: ip }));
    }
    expect(h.server.counters.declines).toBe(200);
    expect(h.server.declinedCount).toBe(0);
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DECLINE, { serverId: SERVER, requestedIp: offer!.packet.yiaddr }));
    expect(h.server.declinedCount).toBe(1);
  });

  it('sends T1 (58) and T2 (59) at 0.5 and 0.875 of the lease in OFFER and ACK, and neither in an INFORM reply', async () => {
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER, { parameterRequestList: [1, 3, 51, 58, 59] }));
    const [ack] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, { serverId: SERVER, requestedIp: offer!.packet.yiaddr }));
    // 600 s lease: T1 300 s (0x012c), T2 525 s (0x020d), each a 4-byte option after the lease time.
    const times = Buffer.from('3304000002583a040000012c3b040000020d', 'hex');
    for (const reply of [offer!, ack!]) expect(reply.wire.includes(times), reply.wire.toString('hex')).toBe(true);
    expect(ack!.packet.options).toMatchObject({ leaseSeconds: 600, renewalSeconds: 300, rebindingSeconds: 525 });
    const [inform] = await h.transport.exchange(request('02:00:00:00:00:07', MessageType.INFORM, {}, { ciaddr: '10.0.0.7' }), 'unicast');
    expect(inform!.packet.options).not.toHaveProperty('renewalSeconds');
    expect(inform!.packet.options).not.toHaveProperty('rebindingSeconds');
  });

  it('INFORM: an ACK with configuration, no address and no lease time, to ciaddr', async () => {
    const [ack] = await h.transport.exchange(request('02:00:00:00:00:07', MessageType.INFORM, {}, { ciaddr: '10.0.0.7' }), 'unicast');
    expect(ack).toMatchObject({ address: '10.0.0.7', port: 68 });
    expect(ack!.packet.yiaddr).toBe('0.0.0.0');
    expect(ack!.packet.options.leaseSeconds).toBeUndefined();
    expect(ack!.packet.options.routers).toEqual(['10.0.0.254']);
  });

  it('stops offering when the pool is exhausted, and reclaims expired leases', async () => {
    for (const n of [1, 2, 3]) await dora(h, `02:00:00:00:00:0${n}`);
    expect(await h.transport.exchange(request('02:00:00:00:00:04', MessageType.DISCOVER))).toEqual([]);
    expect(h.server.counters.noAddress).toBe(1);
    h.clock.now += 601_000;
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:04', MessageType.DISCOVER));
    expect(offer!.packet.yiaddr).toMatch(/^10\.0\.0\.10[0-2]$/);
  });

  it('re-offers a client its current lease', async () => {
    await dora(h, '02:00:00:00:00:01');
    await dora(h, '02:00:00:00:00:02');
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    expect(offer!.packet.yiaddr).toBe('10.0.0.100');
  });

  it('broadcasts when the client sets the broadcast flag and has no address', async () => {
    const [offer] = await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER, {}, { flags: BROADCAST_FLAG }));
    expect(offer).toMatchObject({ address: '255.255.255.255', port: 68 });
    expect(offer!.packet.flags).toBe(BROADCAST_FLAG);
  });

  it('relayed: picks the subnet by giaddr, replies to the relay on port 67, echoes option 82', async () => {
    const relayInfo = [{ code: 1, data: Buffer.from('port7') }, { code: 2, data: Buffer.from('sw1') }];
    const [offer] = await h.transport.exchange(
      request('02:00:00:00:00:01', MessageType.DISCOVER, { relayAgentInfo: relayInfo }, { giaddr: '10.1.0.1', hops: 1 }),
      'unicast',
      { address: '10.1.0.1', port: 67 },
    );
    expect(offer).toMatchObject({ address: '10.1.0.1', port: 67 });
    expect(offer!.packet.yiaddr).toBe('10.1.0.50');
    expect(offer!.packet.giaddr).toBe('10.1.0.1');
    expect(offer!.packet.options.routers).toEqual(['10.1.0.1']);
    expect(offer!.packet.options.relayAgentInfo).toEqual(relayInfo);
    expect(h.unknown[0]?.info.relay).toBe('10.1.0.1');
  });

  it('ignores a relayed request from a network it does not serve', async () => {
    expect(await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER, {}, { giaddr: '172.16.0.1' }), 'unicast')).toEqual([]);
    expect(h.server.counters.ignored).toBe(1);
  });

  it('drops and counts malformed datagrams and replies, never throwing', async () => {
    h.transport.deliverRaw(Buffer.from('not dhcp'));
    const reply = request('02:00:00:00:00:01', MessageType.OFFER);
    reply.op = 2;
    h.transport.deliverRaw(serializeDhcpPacket(reply));
    expect(h.server.counters).toMatchObject({ received: 2, malformed: 2 });
    expect(h.transport.sent).toEqual([]);
  });

  it('sends no ACK when the lease store fails, and counts it', async () => {
    const failing = new MemoryLeaseStore();
    failing.putMany = () => {
      throw new Error('disk full');
    };
    const f = await harness(BASE_CONFIG, failing);
    const [offer] = await f.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    const replies = await f.transport.exchange(request('02:00:00:00:00:01', MessageType.REQUEST, { serverId: SERVER, requestedIp: offer!.packet.yiaddr }));
    expect(replies).toEqual([]);
    expect(f.server.counters).toMatchObject({ acks: 0, storeErrors: 1 });
  });

  it('stores the ACKs of one event-loop turn in one putMany, before sending them', async () => {
    const store = new MemoryLeaseStore();
    const batches: number[] = [];
    const putMany = store.putMany.bind(store);
    store.putMany = (leases) => {
      batches.push(leases.length);
      putMany(leases);
    };
    const b = await harness(BASE_CONFIG, store);
    const offers = [];
    for (const n of [1, 2, 3]) offers.push((await b.transport.exchange(request(`02:00:00:00:00:0${n}`, MessageType.DISCOVER)))[0]!);
    const before = b.transport.sent.length;
    offers.forEach((o, i) =>
      b.transport.deliverRaw(serializeDhcpPacket(request(`02:00:00:00:00:0${i + 1}`, MessageType.REQUEST, { serverId: SERVER, requestedIp: o.packet.yiaddr }))),
    );
    expect(b.transport.sent.length).toBe(before); // nothing sent before the leases are stored
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toEqual([3]);
    expect(b.transport.sent.slice(before).map((s) => s.packet.options.messageType)).toEqual([MessageType.ACK, MessageType.ACK, MessageType.ACK]);
  });

  it('survives an address book that throws, counting the packet', async () => {
    h.book.reservationFor = () => {
      throw new Error('inventory unavailable');
    };
    expect(await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER))).toEqual([]);
    expect(h.server.counters.handlerErrors).toBe(1);
  });

  it('handles 5,000 mutated requests without a handler error, answering only with parseable replies', async () => {
    let seed = 42;
    const random = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.21' });
    const shapes = [
      request('52:54:00:aa:bb:01', MessageType.DISCOVER, IPXE_BIOS),
      request('52:54:00:aa:bb:01', MessageType.REQUEST, { ...OVMF, serverId: SERVER, requestedIp: '10.0.0.21' }),
      request('02:00:00:00:00:01', MessageType.REQUEST, {}, { ciaddr: '10.0.0.100', giaddr: '10.1.0.1' }),
      request('02:00:00:00:00:02', MessageType.INFORM, {}, { ciaddr: '10.0.0.7' }),
      request('02:00:00:00:00:03', MessageType.RELEASE, { serverId: SERVER }, { ciaddr: '10.0.0.100' }),
    ].map(serializeDhcpPacket);
    for (let i = 0; i < 5000; i++) {
      const bytes = Buffer.from(shapes[random(shapes.length)]!);
      for (let flips = 1 + random(4); flips > 0; flips--) bytes[random(bytes.length)] = random(256);
      h.transport.deliverRaw(bytes, random(2) === 0 ? 'broadcast' : 'unicast');
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(h.server.counters.received).toBe(5000);
    expect(h.server.counters.handlerErrors).toBe(0);
    expect(h.server.counters.sendErrors).toBe(0); // the fake transport rejects unparseable replies
    expect(h.server.counters.acks + h.server.counters.offers).toBeGreaterThan(0);
  });

  it('keeps serving when an event hook throws', async () => {
    const transport = new FakeTransport();
    const server = new DhcpServer(BASE_CONFIG, {
      addressBook: new MapAddressBook(),
      leases: new MemoryLeaseStore(),
      transport,
      onEvent: () => {
        throw new Error('engine hiccup');
      },
    });
    await server.start();
    const [offer] = await transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER));
    expect(offer!.packet.options.messageType).toBe(MessageType.OFFER);
    expect(server.counters.hookErrors).toBe(2);
  });
});

describe('DhcpServer boot decisions', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.21' });
  });

  async function offerFor(options: DhcpOptions): Promise<DhcpPacket> {
    const [offer] = await h.transport.exchange(request('52:54:00:aa:bb:01', MessageType.DISCOVER, options));
    return offer!.packet;
  }

  it('OVMF (arch 7): snponly.efi over TFTP, next-server, 66/67, and 60 "PXEClient" with 43 discovery control 8', async () => {
    const p = await offerFor(OVMF);
    expect(p.siaddr).toBe(SERVER);
    expect(p.file).toBe('snponly.efi');
    expect(p.options).toMatchObject({ bootfileName: 'snponly.efi', tftpServerName: SERVER, vendorClassId: 'PXEClient' });
    expect(decodeSubOptions(43, p.options.vendorSpecific!)).toEqual([{ code: 6, data: Buffer.from([8]) }]);
    expect(p.options.ipxe).toBeUndefined();
    expect(h.events[0]).toEqual({ type: 'discover', mac: '52:54:00:aa:bb:01', arch: 7, isIpxe: false });
  });

  it('arch 9 is x86-64 UEFI too; ipxe.efi is configurable', async () => {
    h = await harness({ ...BASE_CONFIG, boot: { uefiX64File: 'ipxe.efi' } });
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.21' });
    expect((await offerFor({ clientArch: [9], vendorClassId: 'PXEClient:Arch:00009:UNDI:003016' })).file).toBe('ipxe.efi');
  });

  it('a client the server\'s user names a UEFI program for (a Secure Boot node) gets it; other clients and other firmware do not', async () => {
    const secureBootMac = '52:54:00:aa:bb:01';
    h = await harness(BASE_CONFIG, new MemoryLeaseStore(), { uefiX64FileFor: (mac) => (mac === secureBootMac ? 'shimx64.efi' : undefined) });
    h.book.reservations.set(secureBootMac, { ip: '10.0.0.21' });
    h.book.reservations.set('52:54:00:aa:bb:02', { ip: '10.0.0.22' });
    const offer = async (mac: string, options: DhcpOptions) => (await h.transport.exchange(request(mac, MessageType.DISCOVER, options)))[0]!.packet;
    const shim = await offer(secureBootMac, OVMF);
    expect(shim.file).toBe('shimx64.efi');
    expect(shim.options).toMatchObject({ bootfileName: 'shimx64.efi', tftpServerName: SERVER, vendorClassId: 'PXEClient' });
    expect((await offer(secureBootMac, { clientArch: [9], vendorClassId: 'PXEClient:Arch:00009:UNDI:003016' })).file).toBe('shimx64.efi');
    expect((await offer('52:54:00:aa:bb:02', OVMF)).file).toBe('snponly.efi');
    // Only x86-64 UEFI PXE has shim: the same node's BIOS ROM still gets iPXE.
    expect((await offer(secureBootMac, BIOS_PXE)).file).toBe('undionly.kpxe');
  });

  it('BIOS PXE (arch 0): undionly.kpxe', async () => {
    const p = await offerFor(BIOS_PXE);
    expect(p.options.bootfileName).toBe('undionly.kpxe');
    expect(p.options.vendorSpecific).toBeDefined();
  });

  it('iPXE (user class "iPXE" and option 175): its script URL and 175 with no-pxedhcp = 1', async () => {
    const p = await offerFor(IPXE_BIOS);
    expect(p.options.bootfileName).toBe('http://10.0.0.1/boot/52:54:00:aa:bb:01.ipxe');
    expect(p.file).toBe('http://10.0.0.1/boot/52:54:00:aa:bb:01.ipxe');
    expect(p.options.ipxe).toEqual([{ code: IPXE_NO_PXEDHCP, data: Buffer.from([1]) }]);
    expect(p.options.vendorClassId).toBeUndefined();
    expect(h.events[0]).toMatchObject({ arch: 0, isIpxe: true });
  });

  it('iPXE recognised by option 175 alone, with a configured script URL template', async () => {
    h = await harness({ ...BASE_CONFIG, boot: { ipxeScriptUrl: 'http://{server}:8080/nodes/{mac}/boot.ipxe' } });
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.21' });
    const p = await offerFor({ clientArch: [7], ipxe: [{ code: 0x13, data: Buffer.from([1]) }] });
    expect(p.options.bootfileName).toBe('http://10.0.0.1:8080/nodes/52:54:00:aa:bb:01/boot.ipxe');
  });

  it('UEFI HTTP boot (arch 16): an HTTP URL and option 60 "HTTPClient"', async () => {
    const p = await offerFor({ clientArch: [16], vendorClassId: 'HTTPClient:Arch:00016:UNDI:003001' });
    expect(p.options.bootfileName).toBe('http://10.0.0.1/boot/ipxe.efi');
    expect(p.options.vendorClassId).toBe('HTTPClient');
    expect(p.options.vendorSpecific).toBeUndefined();
  });

  it('arm64 without configured programs: an address but no boot options', async () => {
    const p = await offerFor({ clientArch: [11], vendorClassId: 'PXEClient:Arch:00011:UNDI:003000' });
    expect(p.yiaddr).toBe('10.0.0.21');
    expect(p.options.bootfileName).toBeUndefined();
  });

  it('arm64 UEFI PXE and HTTP boot when configured', async () => {
    h = await harness({ ...BASE_CONFIG, boot: { uefiArm64File: 'snponly-arm64.efi', httpBootArm64Url: 'http://{server}/boot/ipxe-arm64.efi' } });
    h.book.reservations.set('52:54:00:aa:bb:01', { ip: '10.0.0.21' });
    expect((await offerFor({ clientArch: [11], vendorClassId: 'PXEClient:Arch:00011:UNDI:003000' })).file).toBe('snponly-arm64.efi');
    expect((await offerFor({ clientArch: [19], vendorClassId: 'HTTPClient:Arch:00019:UNDI:003000' })).file).toBe('http://10.0.0.1/boot/ipxe-arm64.efi');
  });

  it('the ACK carries the same boot options as the OFFER', async () => {
    const ack = await dora(h, '52:54:00:aa:bb:01', OVMF);
    expect(ack.options.bootfileName).toBe('snponly.efi');
    expect(ack.options.vendorSpecific).toBeDefined();
  });
});

describe('DhcpServer in proxy mode', () => {
  const proxyConfig: DhcpServerConfigInput = { mode: 'proxy', interface: { name: 'eth1', address: SERVER } };

  it('answers a PXE DISCOVER with boot information and no address', async () => {
    const h = await harness(proxyConfig);
    const [offer] = await h.transport.exchange(request('52:54:00:aa:bb:01', MessageType.DISCOVER, BIOS_PXE));
    expect(offer).toMatchObject({ address: '255.255.255.255', port: 68 });
    const p = offer!.packet;
    expect(p.yiaddr).toBe('0.0.0.0');
    expect(p.options.leaseSeconds).toBeUndefined();
    expect(p.options.subnetMask).toBeUndefined();
    expect(p.options).toMatchObject({ serverId: SERVER, vendorClassId: 'PXEClient', bootfileName: 'undionly.kpxe' });
    expect(p.options.vendorSpecific).toBeDefined();
  });

  it('ignores clients that are not network-booting', async () => {
    const h = await harness(proxyConfig);
    expect(await h.transport.exchange(request('02:00:00:00:00:01', MessageType.DISCOVER, { vendorClassId: 'udhcp 1.35.0' }))).toEqual([]);
    expect(h.server.counters.ignored).toBe(1);
  });

  it('answers a REQUEST on port 4011 with an ACK back to its source', async () => {
    const h = await harness(proxyConfig);
    const [ack] = await h.transport.exchange(request('52:54:00:aa:bb:01', MessageType.REQUEST, OVMF, { ciaddr: '10.0.0.150' }), 'proxy', {
      address: '10.0.0.150',
      port: 68,
    });
    expect(ack).toMatchObject({ address: '10.0.0.150', port: 68 });
    expect(ack!.packet.options).toMatchObject({ messageType: MessageType.ACK, bootfileName: 'snponly.efi', vendorClassId: 'PXEClient' });
  });

  it('gives iPXE its script without no-pxedhcp: here the proxy is what it should wait for', async () => {
    const h = await harness(proxyConfig);
    const [offer] = await h.transport.exchange(request('52:54:00:aa:bb:01', MessageType.DISCOVER, IPXE_BIOS));
    expect(offer!.packet.options.bootfileName).toBe('http://10.0.0.1/boot/52:54:00:aa:bb:01.ipxe');
    expect(offer!.packet.options.ipxe).toBeUndefined();
  });
});

describe('DhcpServer configuration', () => {
  const bad: Array<[string, unknown]> = [
    ['a pool outside its subnet', { ...BASE_CONFIG, subnets: [{ cidr: '10.0.0.0/24', pool: { start: '10.0.1.1', end: '10.0.1.9' } }] }],
    ['a pool containing the server', { ...BASE_CONFIG, subnets: [{ cidr: '10.0.0.0/24', pool: { start: '10.0.0.1', end: '10.0.0.9' } }] }],
    ['full mode without the interface subnet', { ...BASE_CONFIG, subnets: [{ cidr: '10.1.0.0/24' }] }],
    ['overlapping subnets', { ...BASE_CONFIG, subnets: [{ cidr: '10.0.0.0/24' }, { cidr: '10.0.0.0/16' }] }],
    ['a router outside the subnet', { ...BASE_CONFIG, subnets: [{ cidr: '10.0.0.0/24', router: '10.9.9.9' }] }],
    ['a bad address', { ...BASE_CONFIG, interface: { name: 'eth1', address: '10.0.0.256' } }],
    ['an unknown mode', { ...BASE_CONFIG, mode: 'relay' }],
    ['a script URL that is not http', { ...BASE_CONFIG, boot: { ipxeScriptUrl: 'tftp://x/{mac}' } }],
  ];
  it.each(bad)('rejects %s at construction', (_name, config) => {
    expect(() => new DhcpServer(config as DhcpServerConfigInput, { addressBook: new MapAddressBook(), leases: new MemoryLeaseStore() })).toThrow(
      DhcpConfigError,
    );
  });
});

describe.each([
  ['MemoryLeaseStore', () => new MemoryLeaseStore()],
  ['SqliteLeaseStore', () => new SqliteLeaseStore(new Database(':memory:'))],
])('%s', (_name, make) => {
  it('stores, finds by MAC and IP, lists and deletes leases', () => {
    const store = make();
    store.put({ mac: 'aa', ip: '10.0.0.5', expiresAt: 5, hostname: 'n5' });
    store.put({ mac: 'bb', ip: '10.0.0.6', expiresAt: 6 });
    expect(store.get('aa')).toEqual({ mac: 'aa', ip: '10.0.0.5', expiresAt: 5, hostname: 'n5' });
    expect(store.getByIp('10.0.0.6')).toEqual({ mac: 'bb', ip: '10.0.0.6', expiresAt: 6 });
    expect(store.list().map((l) => l.mac)).toEqual(['aa', 'bb']);
    store.delete('aa');
    expect(store.get('aa')).toBeUndefined();
    expect(store.getByIp('10.0.0.5')).toBeUndefined();
  });

  it('put replaces the lease of the same MAC and any other lease on the same IP', () => {
    const store = make();
    store.put({ mac: 'aa', ip: '10.0.0.5', expiresAt: 5 });
    store.put({ mac: 'aa', ip: '10.0.0.7', expiresAt: 7 });
    expect(store.getByIp('10.0.0.5')).toBeUndefined();
    store.put({ mac: 'bb', ip: '10.0.0.7', expiresAt: 9 });
    expect(store.get('aa')).toBeUndefined();
    expect(store.list()).toEqual([{ mac: 'bb', ip: '10.0.0.7', expiresAt: 9 }]);
  });

  it('putMany stores several leases', () => {
    const store = make();
    store.putMany([
      { mac: 'aa', ip: '10.0.0.5', expiresAt: 5 },
      { mac: 'bb', ip: '10.0.0.6', expiresAt: 6 },
    ]);
    expect(store.list().map((l) => l.ip)).toEqual(['10.0.0.5', '10.0.0.6']);
  });

  it('backs a server: the bound lease is in the store', async () => {
    const h = await harness(BASE_CONFIG, make());
    await dora(h, '02:00:00:00:00:01');
    expect(h.leases.get('02:00:00:00:00:01')?.ip).toBe('10.0.0.100');
  });
});

describe('SqliteLeaseStore persistence', () => {
  it('a new store on the same database sees the leases stored before', () => {
    const db = new Database(':memory:');
    new SqliteLeaseStore(db).putMany([{ mac: 'aa', ip: '10.0.0.5', expiresAt: 5, hostname: 'n5' }]);
    const reopened = new SqliteLeaseStore(db);
    expect(reopened.get('aa')).toEqual({ mac: 'aa', ip: '10.0.0.5', expiresAt: 5, hostname: 'n5' });
    reopened.delete('aa');
    expect(new SqliteLeaseStore(db).list()).toEqual([]);
  });
});
