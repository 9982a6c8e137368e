// Deterministic fuzzing of the parser: seeded, so a failure reproduces exactly.
import { describe, expect, it } from 'vitest';
import {
  DhcpParseError,
  MessageType,
  OptionCode,
  parseDhcpPacket,
  serializeDhcpPacket,
  type DhcpOptions,
  type DhcpPacket,
  type EncapsulatedOption,
} from './codec.js';
import { Gen as FuzzGen, prng } from '../../../test/fuzz/kit.js';

/** The shared fuzz generator with what DHCP options are made of. */
class Gen extends FuzzGen {
  ip(): string {
    return [this.int(256), this.int(256), this.int(256), this.int(256)].join('.');
  }
  subOptions(): EncapsulatedOption[] {
    return Array.from({ length: 1 + this.int(4) }, () => ({ code: 1 + this.int(254), data: this.bytes(this.int(8)) }));
  }
}

const KNOWN_CODES = new Set<number>(Object.values(OptionCode));

function randomPacket(g: Gen): DhcpPacket {
  const o: DhcpOptions = {};
  const maybe = () => g.next() < 0.4;
  if (maybe()) o.messageType = (1 + g.int(8)) as MessageType;
  if (maybe()) o.serverId = g.ip();
  if (maybe()) o.requestedIp = g.ip();
  if (maybe()) o.leaseSeconds = g.int(0xffffffff);
  if (maybe()) o.renewalSeconds = g.int(0xffffffff);
  if (maybe()) o.rebindingSeconds = g.int(0xffffffff);
  if (maybe()) o.subnetMask = g.ip();
  if (maybe()) o.routers = Array.from({ length: 1 + g.int(3) }, () => g.ip());
  if (maybe()) o.dnsServers = Array.from({ length: 1 + g.int(70) }, () => g.ip()); // may exceed 255 bytes
  if (maybe()) o.hostname = g.text(1, 40);
  if (maybe()) o.domainName = g.text(1, 300);
  if (maybe()) o.broadcastAddress = g.ip();
  if (maybe()) o.vendorSpecific = g.bytes(g.int(40));
  if (maybe()) o.parameterRequestList = [...g.bytes(1 + g.int(30))];
  if (maybe()) o.maxMessageSize = 576 + g.int(65536 - 576);
  if (maybe()) o.vendorClassId = g.text(1, 40);
  if (maybe()) o.clientId = g.bytes(2 + g.int(20));
  if (maybe()) o.tftpServerName = g.text(1, 30);
  if (maybe()) o.bootfileName = g.text(1, 200);
  if (maybe()) {
    o.userClass = g.bool()
      ? { format: 'rfc3004', classes: Array.from({ length: 1 + g.int(3) }, () => g.text(1, 20)) }
      : // Raw values start with a letter (>= 0x41) so they cannot also read as RFC 3004.
        { format: 'raw', value: `iPXE${g.text(0, 20)}` };
  }
  if (maybe()) o.relayAgentInfo = g.subOptions();
  if (maybe()) o.clientArch = Array.from({ length: 1 + g.int(3) }, () => g.int(65536));
  if (maybe()) o.clientNdi = { type: g.int(256), major: g.int(256), minor: g.int(256) };
  if (maybe()) o.clientUuid = g.bytes(16);
  if (maybe()) o.ipxe = g.subOptions();
  if (maybe()) {
    const other: EncapsulatedOption[] = [];
    for (let code = 1; code < 255; code++) {
      if (!KNOWN_CODES.has(code) && g.next() < 0.02) other.push({ code, data: g.bytes(g.int(20)) });
    }
    if (other.length > 0) o.other = other;
  }
  const chaddr = Buffer.alloc(16);
  g.bytes(16).copy(chaddr);
  return {
    op: g.bool() ? 1 : 2,
    htype: g.int(256),
    hlen: g.int(17),
    hops: g.int(256),
    xid: g.int(0x100000000),
    secs: g.int(65536),
    flags: g.int(65536),
    ciaddr: g.ip(),
    yiaddr: g.ip(),
    siaddr: g.ip(),
    giaddr: g.ip(),
    chaddr,
    sname: g.text(0, 63),
    file: g.text(0, 127),
    options: o,
  };
}

function mutate(g: Gen, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + g.int(6);
  for (let r = 0; r < rounds; r++) {
    switch (g.int(6)) {
      case 0: // flip a bit
        if (b.length > 0) b[g.int(b.length)]! ^= 1 << g.int(8);
        break;
      case 1: // overwrite a byte in the options area, where the lengths are
        if (b.length > 240) b[240 + g.int(b.length - 240)] = g.int(256);
        break;
      case 2: // truncate
        b = b.subarray(0, g.int(b.length + 1));
        break;
      case 3: // insert a random option just after the cookie
        b = Buffer.concat([b.subarray(0, 240), Buffer.from([g.int(256), g.int(256)]), g.bytes(g.int(20)), b.subarray(240)]);
        break;
      case 4: // set the overload option's value into sname/file
        b = Buffer.concat([b.subarray(0, 240), Buffer.from([52, 1, g.int(5)]), b.subarray(240)]);
        break;
      case 5: // random junk in sname/file
        if (b.length > 236) g.bytes(192).copy(b, 44, 0, 192);
        break;
    }
  }
  return b;
}

function expectParsesOrTypedError(buf: Buffer): DhcpPacket | undefined {
  let result;
  try {
    result = parseDhcpPacket(buf);
  } catch (error) {
    throw new Error(`parser threw on ${buf.toString('hex')}: ${String(error)}`);
  }
  if (result.ok) return result.packet;
  expect(result.error).toBeInstanceOf(DhcpParseError);
  return undefined;
}

describe('DHCP codec fuzzing', () => {
  it('round-trips 2,000 random packets: parse(serialize(p)) equals p', () => {
    const g = new Gen(prng(0x5eed));
    for (let i = 0; i < 2000; i++) {
      const packet = randomPacket(g);
      const result = parseDhcpPacket(serializeDhcpPacket(packet));
      if (!result.ok) throw new Error(`case ${i}: ${result.error.message}`);
      expect(result.packet).toEqual(packet);
    }
  });

  it('returns a packet or a DhcpParseError for 20,000 mutated packets, and what parses re-serialises stably', () => {
    const g = new Gen(prng(0xd1ce));
    const seeds = Array.from({ length: 50 }, () => serializeDhcpPacket(randomPacket(g)));
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < 20_000; i++) {
      const packet = expectParsesOrTypedError(mutate(g, seeds[g.int(seeds.length)]!));
      if (!packet) {
        rejected += 1;
        continue;
      }
      accepted += 1;
      const again = parseDhcpPacket(serializeDhcpPacket(packet));
      expect(again.ok && again.packet).toEqual(packet);
    }
    // Both paths must actually be exercised for the test to mean anything.
    expect(accepted).toBeGreaterThan(1000);
    expect(rejected).toBeGreaterThan(1000);
  });

  it('returns a packet or a DhcpParseError for 5,000 purely random datagrams', () => {
    const g = new Gen(prng(0xbad));
    for (let i = 0; i < 5000; i++) {
      const buf = g.bytes(g.int(700));
      if (buf.length >= 240 && g.bool()) buf.writeUInt32BE(0x63825363, 236);
      expectParsesOrTypedError(buf);
    }
  });
});
