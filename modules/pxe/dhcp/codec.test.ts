import { describe, expect, it } from 'vitest';
import {
  DhcpParseError,
  MessageType,
  macOf,
  parseDhcpPacket,
  serializeDhcpPacket,
  type DhcpPacket,
} from './codec.js';
import { classifyClient } from './boot.js';

/**
 * A request laid out byte by byte, independent of serializeDhcpPacket, in the shape the
 * real clients send (field values taken from OVMF and iPXE DISCOVERs).
 */
function rawRequest(mac: string, optionsHex: string, extra: { sname?: Buffer; file?: Buffer; flags?: number } = {}): Buffer {
  const header = Buffer.alloc(240);
  header[0] = 1; // BOOTREQUEST
  header[1] = 1; // Ethernet
  header[2] = 6;
  header.writeUInt32BE(0x1a2b3c4d, 4);
  header.writeUInt16BE(4, 8); // secs
  header.writeUInt16BE(extra.flags ?? 0x8000, 10);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(header, 28);
  extra.sname?.copy(header, 44);
  extra.file?.copy(header, 108);
  header.writeUInt32BE(0x63825363, 236);
  return Buffer.concat([header, Buffer.from(optionsHex.replace(/\s+/g, ''), 'hex')]);
}

const hex = (s: string) => Buffer.from(s, 'latin1').toString('hex');
const tlv = (code: number, dataHex: string) => code.toString(16).padStart(2, '0') + (dataHex.length / 2).toString(16).padStart(2, '0') + dataHex;

const OVMF_UUID = '8a1c2b3d4e5f60718293a4b5c6d7e8f9';
const OVMF_DISCOVER = rawRequest(
  '52:54:00:aa:bb:01',
  tlv(53, '01') +
    tlv(57, '05c0') +
    tlv(55, '0102030405060c0d0f111216171c28292a2b3233363a3b3c4243618081828384858687') +
    tlv(97, `00${OVMF_UUID}`) +
    tlv(94, '010300') +
    tlv(93, '0007') +
    tlv(60, hex('PXEClient:Arch:00007:UNDI:003000')) +
    'ff',
);

const IPXE_SUBOPTIONS = tlv(0x13, '01') + tlv(0x11, '01') + tlv(0x15, '01') + tlv(0xeb, '010000') + tlv(0xb1, '0180861000');
const IPXE_BIOS_DISCOVER = rawRequest(
  '52:54:00:aa:bb:02',
  tlv(53, '01') +
    tlv(57, '05c0') +
    tlv(93, '0000') +
    tlv(94, '010201') +
    tlv(60, hex('PXEClient:Arch:00000:UNDI:002001')) +
    tlv(77, hex('iPXE')) +
    tlv(55, '0103060c0f111a2b3c4243778081828384858687afcb') +
    tlv(175, IPXE_SUBOPTIONS) +
    tlv(61, '01525400aabb02') +
    '00 00 ff 00 00',
);

function parsed(buf: Buffer): DhcpPacket {
  const result = parseDhcpPacket(buf);
  if (!result.ok) throw result.error;
  return result.packet;
}

describe('DHCP codec, captured-shape packets', () => {
  it('parses an OVMF x86-64 UEFI PXE DISCOVER', () => {
    const p = parsed(OVMF_DISCOVER);
    expect(p.op).toBe(1);
    expect(macOf(p)).toBe('52:54:00:aa:bb:01');
    expect(p.xid).toBe(0x1a2b3c4d);
    expect(p.flags).toBe(0x8000);
    expect(p.options.messageType).toBe(MessageType.DISCOVER);
    expect(p.options.maxMessageSize).toBe(1472);
    expect(p.options.clientArch).toEqual([7]);
    expect(p.options.clientNdi).toEqual({ type: 1, major: 3, minor: 0 });
    expect(p.options.clientUuid?.toString('hex')).toBe(OVMF_UUID);
    expect(p.options.vendorClassId).toBe('PXEClient:Arch:00007:UNDI:003000');
    expect(p.options.parameterRequestList).toContain(60);
    expect(classifyClient(p.options)).toEqual({ arch: 7, isIpxe: false, isPxeClient: true, isHttpClient: false });
  });

  it('parses a BIOS iPXE DISCOVER with the raw "iPXE" user class and option 175', () => {
    const p = parsed(IPXE_BIOS_DISCOVER);
    expect(p.options.userClass).toEqual({ format: 'raw', value: 'iPXE' });
    expect(p.options.ipxe?.map((s) => s.code)).toEqual([0x13, 0x11, 0x15, 0xeb, 0xb1]);
    expect(p.options.ipxe?.[3]?.data.toString('hex')).toBe('010000');
    expect(p.options.clientId?.toString('hex')).toBe('01525400aabb02');
    expect(p.options.parameterRequestList).toContain(175);
    expect(classifyClient(p.options)).toEqual({ arch: 0, isIpxe: true, isPxeClient: true, isHttpClient: false });
  });

  it('reads RFC 3004 user classes as a list', () => {
    const p = parsed(rawRequest('52:54:00:aa:bb:03', tlv(53, '01') + tlv(77, `04${hex('iPXE')}03${hex('abc')}`) + 'ff'));
    expect(p.options.userClass).toEqual({ format: 'rfc3004', classes: ['iPXE', 'abc'] });
    expect(classifyClient(p.options).isIpxe).toBe(true);
  });

  it.each([
    ['OVMF', OVMF_DISCOVER],
    ['iPXE', IPXE_BIOS_DISCOVER],
  ])('round-trips the %s DISCOVER through serialize and parse', (_name, raw) => {
    const first = parsed(raw);
    const again = parsed(serializeDhcpPacket(first));
    expect(again).toEqual(first);
  });

  it('reads and writes the renewal (58) and rebinding (59) times as 4-byte seconds', () => {
    const p = parsed(rawRequest('52:54:00:aa:bb:08', tlv(53, '05') + tlv(51, '00000e10') + tlv(58, '00000708') + tlv(59, '00000c4e') + 'ff'));
    expect(p.options).toMatchObject({ leaseSeconds: 3600, renewalSeconds: 1800, rebindingSeconds: 3150 });
    expect(serializeDhcpPacket(p).includes(Buffer.from('330400000e103a04000007083b0400000c4e', 'hex'))).toBe(true);
    expect(parseDhcpPacket(rawRequest('52:54:00:aa:bb:08', tlv(58, '0708') + 'ff')).ok).toBe(false);
  });

  it('reads options from sname and file when option 52 overloads them, file first', () => {
    const file = Buffer.from(tlv(12, hex('node07')) + tlv(60, hex('PXEClient')) + 'ff', 'hex');
    const sname = Buffer.from(tlv(12, hex('-a')) + 'ff', 'hex');
    const p = parsed(rawRequest('52:54:00:aa:bb:04', tlv(53, '03') + tlv(52, '03') + tlv(50, '0a000005') + 'ff', { sname, file }));
    expect(p.options.hostname).toBe('node07-a'); // RFC 3396: split option parts concatenate
    expect(p.options.vendorClassId).toBe('PXEClient');
    expect(p.options.requestedIp).toBe('10.0.0.5');
    expect(p.sname).toBe('');
    expect(p.file).toBe('');
  });

  it('keeps sname and file as strings without overload', () => {
    const p = parsed(rawRequest('52:54:00:aa:bb:05', tlv(53, '01') + 'ff', { sname: Buffer.from('boot-srv'), file: Buffer.from('pxelinux.0') }));
    expect(p.sname).toBe('boot-srv');
    expect(p.file).toBe('pxelinux.0');
  });

  it('splits options longer than 255 bytes into consecutive instances and joins them back', () => {
    const p = parsed(OVMF_DISCOVER);
    p.options.vendorSpecific = Buffer.alloc(600, 7);
    const wire = serializeDhcpPacket(p);
    expect(wire.length).toBeGreaterThan(600 + 240);
    expect(parsed(wire).options.vendorSpecific).toEqual(Buffer.alloc(600, 7));
  });

  it('pads replies to the 300-byte BOOTP minimum', () => {
    const p = parsed(rawRequest('52:54:00:aa:bb:06', tlv(53, '01') + 'ff'));
    expect(serializeDhcpPacket(p).length).toBe(300);
  });

  it.each([
    ['a short datagram', Buffer.alloc(100), 'truncated-header'],
    ['op 3', (() => { const b = Buffer.from(OVMF_DISCOVER); b[0] = 3; return b; })(), 'bad-op'],
    ['hlen 17', (() => { const b = Buffer.from(OVMF_DISCOVER); b[2] = 17; return b; })(), 'bad-hlen'],
    ['no magic cookie', (() => { const b = Buffer.from(OVMF_DISCOVER); b[236] = 0; return b; })(), 'bad-magic-cookie'],
    ['no END', rawRequest('52:54:00:aa:bb:07', tlv(53, '01')), 'missing-end'],
    ['an option running past the end', rawRequest('52:54:00:aa:bb:07', '3501'), 'option-overrun'],
    ['message type of length 2', rawRequest('52:54:00:aa:bb:07', tlv(53, '0101') + 'ff'), 'bad-option-length'],
    ['message type 0', rawRequest('52:54:00:aa:bb:07', tlv(53, '00') + 'ff'), 'bad-option-value'],
    ['server id of 3 bytes', rawRequest('52:54:00:aa:bb:07', tlv(53, '03') + tlv(54, '0a0000') + 'ff'), 'bad-option-length'],
    ['routers of 6 bytes', rawRequest('52:54:00:aa:bb:07', tlv(3, '0a0000010a00') + 'ff'), 'bad-option-length'],
    ['odd-length client arch', rawRequest('52:54:00:aa:bb:07', tlv(93, '000700') + 'ff'), 'bad-option-length'],
    ['UUID of 16 bytes', rawRequest('52:54:00:aa:bb:07', tlv(97, `${OVMF_UUID}`) + 'ff'), 'bad-option-length'],
    ['UUID type 1', rawRequest('52:54:00:aa:bb:07', tlv(97, `01${OVMF_UUID}`) + 'ff'), 'bad-option-value'],
    ['max message size 500', rawRequest('52:54:00:aa:bb:07', tlv(57, '01f4') + 'ff'), 'bad-option-value'],
    ['a 175 sub-option overrunning 175', rawRequest('52:54:00:aa:bb:07', tlv(175, 'b00501') + 'ff'), 'bad-option-value'],
    ['overload 4', rawRequest('52:54:00:aa:bb:07', tlv(52, '04') + 'ff'), 'bad-option-value'],
    ['empty hostname', rawRequest('52:54:00:aa:bb:07', tlv(12, '00') + 'ff'), 'bad-option-value'],
  ])('rejects %s with a typed error', (_name, buf, code) => {
    const result = parseDhcpPacket(buf);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error).toBeInstanceOf(DhcpParseError);
      expect(result.error.code).toBe(code);
    }
  });
});
