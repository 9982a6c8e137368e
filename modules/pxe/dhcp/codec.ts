// DHCPv4 wire format (RFC 2131 header, RFC 2132 options, RFC 3396 long options, RFC 3004
// user class, RFC 3046 relay agent information, RFC 4578 PXE options, iPXE option 175).
// The parser is the edge for untrusted packets: every length is checked, and anything
// malformed comes back as a DhcpParseError result; it never throws.

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
const MAGIC_COOKIE = 0x63825363;
const HEADER_LENGTH = 236;
const OPTIONS_OFFSET = HEADER_LENGTH + 4;
/** BOOTP relays and some PXE ROMs drop replies shorter than the 300-byte BOOTP minimum. */
const MIN_PACKET_LENGTH = 300;
const SNAME_OFFSET = 44;
const SNAME_LENGTH = 64;
const FILE_OFFSET = 108;
const FILE_LENGTH = 128;

export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const OptionCode = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTERS: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  BROADCAST_ADDRESS: 28,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS_ID: 60,
  CLIENT_ID: 61,
  TFTP_SERVER_NAME: 66,
  BOOTFILE_NAME: 67,
  USER_CLASS: 77,
  RELAY_AGENT_INFO: 82,
  CLIENT_ARCH: 93,
  CLIENT_NDI: 94,
  CLIENT_UUID: 97,
  IPXE_ENCAPSULATED: 175,
  END: 255,
} as const;

/** iPXE encapsulated sub-option (inside 175): "do not wait for a ProxyDHCP offer". */
export const IPXE_NO_PXEDHCP = 176;

export type UserClass =
  /** RFC 3004: a list of length-prefixed class identifiers. */
  | { format: 'rfc3004'; classes: string[] }
  /** The unprefixed form iPXE (and older clients) send, e.g. the 4 bytes "iPXE". */
  | { format: 'raw'; value: string };

export interface EncapsulatedOption {
  code: number;
  data: Buffer;
}

export interface DhcpOptions {
  messageType?: MessageType;
  serverId?: string;
  requestedIp?: string;
  leaseSeconds?: number;
  /** T1 (option 58): when the client starts renewing with this server. */
  renewalSeconds?: number;
  /** T2 (option 59): when the client starts asking any server. */
  rebindingSeconds?: number;
  subnetMask?: string;
  routers?: string[];
  dnsServers?: string[];
  hostname?: string;
  domainName?: string;
  broadcastAddress?: string;
  /** Option 43 as bytes; for PXE it holds encapsulated sub-options (see encodeSubOptions). */
  vendorSpecific?: Buffer;
  parameterRequestList?: number[];
  maxMessageSize?: number;
  vendorClassId?: string;
  clientId?: Buffer;
  tftpServerName?: string;
  bootfileName?: string;
  userClass?: UserClass;
  /** RFC 3046 sub-options; a server echoes them back unchanged. */
  relayAgentInfo?: EncapsulatedOption[];
  /** RFC 4578 client system architecture types, in the client's order. */
  clientArch?: number[];
  clientNdi?: { type: number; major: number; minor: number };
  /** RFC 4578 option 97 (type 0): the 16-byte machine UUID. */
  clientUuid?: Buffer;
  /** iPXE option 175 sub-options. */
  ipxe?: EncapsulatedOption[];
  /** Options this codec does not interpret, kept so nothing a client sent is lost. */
  other?: EncapsulatedOption[];
}

export interface DhcpPacket {
  op: typeof BOOTREQUEST | typeof BOOTREPLY;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The 16-byte chaddr field; the hardware address is its first `hlen` bytes. */
  chaddr: Buffer;
  sname: string;
  file: string;
  options: DhcpOptions;
}

export const BROADCAST_FLAG = 0x8000;

export type DhcpParseErrorCode =
  | 'truncated-header'
  | 'bad-op'
  | 'bad-hlen'
  | 'bad-magic-cookie'
  | 'option-overrun'
  | 'missing-end'
  | 'bad-option-length'
  | 'bad-option-value';

export class DhcpParseError extends Error {
  constructor(
    readonly code: DhcpParseErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'DhcpParseError';
  }
}

export type ParseResult = { ok: true; packet: DhcpPacket } | { ok: false; error: DhcpParseError };

// ---- IPv4 and hardware addresses -------------------------------------------------------

export function ipToString(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

const IPV4_PATTERN = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(text: string): boolean {
  return IPV4_PATTERN.test(text);
}

/** The address as an unsigned 32-bit number; callers validate with isIpv4 first. */
export function ipToNumber(ip: string): number {
  // Hand-rolled: this runs several times per packet, and split/map showed in profiles.
  let result = 0;
  let octet = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      result = result * 256 + octet;
      octet = 0;
    } else {
      octet = octet * 10 + (c - 48);
    }
  }
  return result * 256 + octet;
}

export function numberToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function writeIp(buf: Buffer, offset: number, ip: string): void {
  buf.writeUInt32BE(ipToNumber(ip), offset);
}

/** The client's hardware address as lower-case colon-separated hex ("52:54:00:12:34:56"). */
export function macOf(packet: DhcpPacket): string {
  return [...packet.chaddr.subarray(0, packet.hlen)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function chaddrFromMac(mac: string): Buffer {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  return chaddr;
}

// ---- parsing ---------------------------------------------------------------------------

/** Reads a NUL-terminated latin1 string from a fixed-size header field. */
function fixedString(buf: Buffer, offset: number, length: number): string {
  const field = buf.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? length : nul).toString('latin1');
}

/**
 * Splits one options area into (code, data) pairs. Returns whether END was seen.
 * Repeated codes are concatenated (RFC 3396) by the caller.
 */
function scanOptions(area: Buffer, into: Map<number, Buffer[]>, where: string): boolean {
  let i = 0;
  while (i < area.length) {
    const code = area[i]!;
    if (code === OptionCode.PAD) {
      i += 1;
      continue;
    }
    if (code === OptionCode.END) return true;
    if (i + 1 >= area.length) throw new DhcpParseError('option-overrun', `option ${code} in ${where} has no length byte`);
    const length = area[i + 1]!;
    if (i + 2 + length > area.length) {
      throw new DhcpParseError('option-overrun', `option ${code} in ${where} claims ${length} bytes past the end`);
    }
    const parts = into.get(code);
    const data = area.subarray(i + 2, i + 2 + length);
    if (parts) parts.push(data);
    else into.set(code, [data]);
    i += 2 + length;
  }
  return false;
}

function expectLength(code: number, data: Buffer, ok: boolean, what: string): void {
  if (!ok) throw new DhcpParseError('bad-option-length', `option ${code} has length ${data.length}, expected ${what}`);
}

function readAddressList(code: number, data: Buffer): string[] {
  expectLength(code, data, data.length >= 4 && data.length % 4 === 0, 'a non-zero multiple of 4');
  const out: string[] = [];
  for (let i = 0; i < data.length; i += 4) out.push(ipToString(data, i));
  return out;
}

function readAddress(code: number, data: Buffer): string {
  expectLength(code, data, data.length === 4, '4');
  return ipToString(data, 0);
}

function readText(code: number, data: Buffer): string {
  expectLength(code, data, data.length >= 1, 'at least 1');
  // Some clients NUL-terminate text options; the NUL is not part of the value.
  const nul = data.indexOf(0);
  if (nul === 0) throw new DhcpParseError('bad-option-value', `option ${code} is an empty string`);
  return data.subarray(0, nul === -1 ? data.length : nul).toString('latin1');
}

/** Sub-options encapsulated as code/length/data without PAD or END (RFC 3046, iPXE 175, PXE 43). */
export function decodeSubOptions(code: number, data: Buffer): EncapsulatedOption[] {
  const out: EncapsulatedOption[] = [];
  let i = 0;
  while (i < data.length) {
    const sub = data[i]!;
    if (sub === OptionCode.PAD) {
      i += 1;
      continue;
    }
    if (sub === OptionCode.END) break;
    if (i + 1 >= data.length) throw new DhcpParseError('bad-option-value', `option ${code}: sub-option ${sub} has no length`);
    const length = data[i + 1]!;
    if (i + 2 + length > data.length) {
      throw new DhcpParseError('bad-option-value', `option ${code}: sub-option ${sub} overruns its option`);
    }
    out.push({ code: sub, data: Buffer.from(data.subarray(i + 2, i + 2 + length)) });
    i += 2 + length;
  }
  return out;
}

export function encodeSubOptions(subs: EncapsulatedOption[]): Buffer {
  return Buffer.concat(subs.map((s) => Buffer.concat([Buffer.from([s.code, s.data.length]), s.data])));
}

function decodeUserClass(data: Buffer): UserClass {
  // RFC 3004 instances are each length-prefixed and must cover the option exactly;
  // anything else (iPXE sends the bare bytes "iPXE") is the raw form.
  const classes: string[] = [];
  let i = 0;
  while (i < data.length) {
    const length = data[i]!;
    if (length === 0 || i + 1 + length > data.length) return { format: 'raw', value: data.toString('latin1') };
    classes.push(data.subarray(i + 1, i + 1 + length).toString('latin1'));
    i += 1 + length;
  }
  return { format: 'rfc3004', classes };
}

function decodeOptions(parts: Map<number, Buffer[]>): DhcpOptions {
  const o: DhcpOptions = {};
  const other: EncapsulatedOption[] = [];
  for (const [code, chunks] of [...parts.entries()].sort((a, b) => a[0] - b[0])) {
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    switch (code) {
      case OptionCode.MESSAGE_TYPE: {
        expectLength(code, data, data.length === 1, '1');
        const t = data[0]!;
        if (t < MessageType.DISCOVER || t > MessageType.INFORM) {
          throw new DhcpParseError('bad-option-value', `unknown message type ${t}`);
        }
        o.messageType = t as MessageType;
        break;
      }
      case OptionCode.SERVER_ID:
        o.serverId = readAddress(code, data);
        break;
      case OptionCode.REQUESTED_IP:
        o.requestedIp = readAddress(code, data);
        break;
      case OptionCode.LEASE_TIME:
        expectLength(code, data, data.length === 4, '4');
        o.leaseSeconds = data.readUInt32BE(0);
        break;
      case OptionCode.RENEWAL_TIME:
        expectLength(code, data, data.length === 4, '4');
        o.renewalSeconds = data.readUInt32BE(0);
        break;
      case OptionCode.REBINDING_TIME:
        expectLength(code, data, data.length === 4, '4');
        o.rebindingSeconds = data.readUInt32BE(0);
        break;
      case OptionCode.SUBNET_MASK:
        o.subnetMask = readAddress(code, data);
        break;
      case OptionCode.BROADCAST_ADDRESS:
        o.broadcastAddress = readAddress(code, data);
        break;
      case OptionCode.ROUTERS:
        o.routers = readAddressList(code, data);
        break;
      case OptionCode.DNS_SERVERS:
        o.dnsServers = readAddressList(code, data);
        break;
      case OptionCode.HOSTNAME:
        o.hostname = readText(code, data);
        break;
      case OptionCode.DOMAIN_NAME:
        o.domainName = readText(code, data);
        break;
      case OptionCode.VENDOR_SPECIFIC:
        o.vendorSpecific = Buffer.from(data);
        break;
      case OptionCode.OVERLOAD:
        break; // consumed while locating option areas
      case OptionCode.PARAMETER_REQUEST_LIST:
        expectLength(code, data, data.length >= 1, 'at least 1');
        o.parameterRequestList = [...data];
        break;
      case OptionCode.MAX_MESSAGE_SIZE:
        expectLength(code, data, data.length === 2, '2');
        o.maxMessageSize = data.readUInt16BE(0);
        if (o.maxMessageSize < 576) throw new DhcpParseError('bad-option-value', `max message size ${o.maxMessageSize} < 576`);
        break;
      case OptionCode.VENDOR_CLASS_ID:
        o.vendorClassId = readText(code, data);
        break;
      case OptionCode.CLIENT_ID:
        expectLength(code, data, data.length >= 2, 'at least 2');
        o.clientId = Buffer.from(data);
        break;
      case OptionCode.TFTP_SERVER_NAME:
        o.tftpServerName = readText(code, data);
        break;
      case OptionCode.BOOTFILE_NAME:
        o.bootfileName = readText(code, data);
        break;
      case OptionCode.USER_CLASS:
        expectLength(code, data, data.length >= 1, 'at least 1');
        o.userClass = decodeUserClass(data);
        break;
      case OptionCode.RELAY_AGENT_INFO:
        expectLength(code, data, data.length >= 2, 'at least 2');
        o.relayAgentInfo = decodeSubOptions(code, data);
        break;
      case OptionCode.CLIENT_ARCH: {
        expectLength(code, data, data.length >= 2 && data.length % 2 === 0, 'a non-zero multiple of 2');
        const arches: number[] = [];
        for (let i = 0; i < data.length; i += 2) arches.push(data.readUInt16BE(i));
        o.clientArch = arches;
        break;
      }
      case OptionCode.CLIENT_NDI:
        expectLength(code, data, data.length === 3, '3');
        o.clientNdi = { type: data[0]!, major: data[1]!, minor: data[2]! };
        break;
      case OptionCode.CLIENT_UUID:
        expectLength(code, data, data.length === 17, '17');
        if (data[0] !== 0) throw new DhcpParseError('bad-option-value', `client UUID type ${data[0]} is not 0`);
        o.clientUuid = Buffer.from(data.subarray(1));
        break;
      case OptionCode.IPXE_ENCAPSULATED:
        o.ipxe = decodeSubOptions(code, data);
        break;
      default:
        other.push({ code, data: Buffer.from(data) });
    }
  }
  if (other.length > 0) o.other = other;
  return o;
}

function parseOrThrow(buf: Buffer): DhcpPacket {
  if (buf.length < OPTIONS_OFFSET) {
    throw new DhcpParseError('truncated-header', `${buf.length} bytes, a DHCP packet has at least ${OPTIONS_OFFSET}`);
  }
  const op = buf[0]!;
  if (op !== BOOTREQUEST && op !== BOOTREPLY) throw new DhcpParseError('bad-op', `op ${op}`);
  const hlen = buf[2]!;
  if (hlen > 16) throw new DhcpParseError('bad-hlen', `hlen ${hlen} exceeds the 16-byte chaddr field`);
  if (buf.readUInt32BE(HEADER_LENGTH) !== MAGIC_COOKIE) {
    throw new DhcpParseError('bad-magic-cookie', 'not a DHCP packet (BOOTP without the magic cookie)');
  }

  const parts = new Map<number, Buffer[]>();
  if (!scanOptions(buf.subarray(OPTIONS_OFFSET), parts, 'options')) {
    throw new DhcpParseError('missing-end', 'options field has no END option');
  }
  let overload = 0;
  const overloadParts = parts.get(OptionCode.OVERLOAD);
  if (overloadParts) {
    const data = Buffer.concat(overloadParts);
    expectLength(OptionCode.OVERLOAD, data, data.length === 1, '1');
    overload = data[0]!;
    if (overload < 1 || overload > 3) throw new DhcpParseError('bad-option-value', `overload ${overload}`);
    // RFC 2131 4.1: the file field is read before sname. END inside them is optional in practice.
    if (overload & 1) scanOptions(buf.subarray(FILE_OFFSET, FILE_OFFSET + FILE_LENGTH), parts, 'file');
    if (overload & 2) scanOptions(buf.subarray(SNAME_OFFSET, SNAME_OFFSET + SNAME_LENGTH), parts, 'sname');
  }

  return {
    op,
    htype: buf[1]!,
    hlen,
    hops: buf[3]!,
    xid: buf.readUInt32BE(4),
    secs: buf.readUInt16BE(8),
    flags: buf.readUInt16BE(10),
    ciaddr: ipToString(buf, 12),
    yiaddr: ipToString(buf, 16),
    siaddr: ipToString(buf, 20),
    giaddr: ipToString(buf, 24),
    chaddr: Buffer.from(buf.subarray(28, 44)),
    sname: overload & 2 ? '' : fixedString(buf, SNAME_OFFSET, SNAME_LENGTH),
    file: overload & 1 ? '' : fixedString(buf, FILE_OFFSET, FILE_LENGTH),
    options: decodeOptions(parts),
  };
}

/** Parses one UDP payload. Malformed input yields `{ ok: false, error }`, never an exception. */
export function parseDhcpPacket(buf: Buffer): ParseResult {
  try {
    return { ok: true, packet: parseOrThrow(buf) };
  } catch (error) {
    if (error instanceof DhcpParseError) return { ok: false, error };
    throw error;
  }
}

// ---- serialising -----------------------------------------------------------------------

/** Reused by every serialisation (they are synchronous); the result is copied out of it. */
let scratch = Buffer.allocUnsafe(1024);

/** Writes options straight into one buffer: replies are built per packet, and small Buffers cost GC. */
class OptionWriter {
  private buf = scratch;
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
    scratch = bigger;
  }

  /** One option from bytes, split into 255-byte instances when longer (RFC 3396). */
  bytes(code: number, data: Buffer): void {
    if (data.length === 0) {
      this.reserve(2);
      this.buf[this.length++] = code;
      this.buf[this.length++] = 0;
      return;
    }
    for (let i = 0; i < data.length; i += 255) {
      const n = Math.min(255, data.length - i);
      this.reserve(2 + n);
      this.buf[this.length++] = code;
      this.buf[this.length++] = n;
      data.copy(this.buf, this.length, i, i + n);
      this.length += n;
    }
  }

  text(code: number, value: string): void {
    this.bytes(code, Buffer.from(value, 'latin1'));
  }

  u8(code: number, value: number): void {
    this.reserve(3);
    this.buf[this.length++] = code;
    this.buf[this.length++] = 1;
    this.buf[this.length++] = value;
  }

  u16s(code: number, values: number[]): void {
    if (values.length * 2 > 255) return this.bytes(code, Buffer.from(values.flatMap((v) => [v >> 8, v & 255])));
    this.reserve(2 + values.length * 2);
    this.buf[this.length++] = code;
    this.buf[this.length++] = values.length * 2;
    for (const v of values) {
      this.buf.writeUInt16BE(v, this.length);
      this.length += 2;
    }
  }

  u32(code: number, value: number): void {
    this.reserve(6);
    this.buf[this.length++] = code;
    this.buf[this.length++] = 4;
    this.buf.writeUInt32BE(value >>> 0, this.length);
    this.length += 4;
  }

  addresses(code: number, ips: string[]): void {
    if (ips.length * 4 > 255) {
      const data = Buffer.alloc(ips.length * 4);
      ips.forEach((ip, i) => writeIp(data, i * 4, ip));
      return this.bytes(code, data);
    }
    this.reserve(2 + ips.length * 4);
    this.buf[this.length++] = code;
    this.buf[this.length++] = ips.length * 4;
    for (const ip of ips) {
      writeIp(this.buf, this.length, ip);
      this.length += 4;
    }
  }

  end(): Buffer {
    this.reserve(1);
    this.buf[this.length++] = OptionCode.END;
    return this.buf.subarray(0, this.length);
  }
}

function encodeUserClass(uc: UserClass): Buffer {
  if (uc.format === 'raw') return Buffer.from(uc.value, 'latin1');
  return Buffer.concat(uc.classes.map((c) => Buffer.concat([Buffer.from([c.length]), Buffer.from(c, 'latin1')])));
}

/** Message type first: some clients look only there. */
function writeOptions(o: DhcpOptions): Buffer {
  const w = new OptionWriter();
  if (o.messageType !== undefined) w.u8(OptionCode.MESSAGE_TYPE, o.messageType);
  if (o.serverId !== undefined) w.addresses(OptionCode.SERVER_ID, [o.serverId]);
  if (o.leaseSeconds !== undefined) w.u32(OptionCode.LEASE_TIME, o.leaseSeconds);
  if (o.renewalSeconds !== undefined) w.u32(OptionCode.RENEWAL_TIME, o.renewalSeconds);
  if (o.rebindingSeconds !== undefined) w.u32(OptionCode.REBINDING_TIME, o.rebindingSeconds);
  if (o.subnetMask !== undefined) w.addresses(OptionCode.SUBNET_MASK, [o.subnetMask]);
  if (o.routers !== undefined) w.addresses(OptionCode.ROUTERS, o.routers);
  if (o.dnsServers !== undefined) w.addresses(OptionCode.DNS_SERVERS, o.dnsServers);
  if (o.hostname !== undefined) w.text(OptionCode.HOSTNAME, o.hostname);
  if (o.domainName !== undefined) w.text(OptionCode.DOMAIN_NAME, o.domainName);
  if (o.broadcastAddress !== undefined) w.addresses(OptionCode.BROADCAST_ADDRESS, [o.broadcastAddress]);
  if (o.vendorSpecific !== undefined) w.bytes(OptionCode.VENDOR_SPECIFIC, o.vendorSpecific);
  if (o.requestedIp !== undefined) w.addresses(OptionCode.REQUESTED_IP, [o.requestedIp]);
  if (o.parameterRequestList !== undefined) w.bytes(OptionCode.PARAMETER_REQUEST_LIST, Buffer.from(o.parameterRequestList));
  if (o.maxMessageSize !== undefined) w.u16s(OptionCode.MAX_MESSAGE_SIZE, [o.maxMessageSize]);
  if (o.vendorClassId !== undefined) w.text(OptionCode.VENDOR_CLASS_ID, o.vendorClassId);
  if (o.clientId !== undefined) w.bytes(OptionCode.CLIENT_ID, o.clientId);
  if (o.tftpServerName !== undefined) w.text(OptionCode.TFTP_SERVER_NAME, o.tftpServerName);
  if (o.bootfileName !== undefined) w.text(OptionCode.BOOTFILE_NAME, o.bootfileName);
  if (o.userClass !== undefined) w.bytes(OptionCode.USER_CLASS, encodeUserClass(o.userClass));
  if (o.relayAgentInfo !== undefined) w.bytes(OptionCode.RELAY_AGENT_INFO, encodeSubOptions(o.relayAgentInfo));
  if (o.clientArch !== undefined) w.u16s(OptionCode.CLIENT_ARCH, o.clientArch);
  if (o.clientNdi !== undefined) w.bytes(OptionCode.CLIENT_NDI, Buffer.from([o.clientNdi.type, o.clientNdi.major, o.clientNdi.minor]));
  if (o.clientUuid !== undefined) w.bytes(OptionCode.CLIENT_UUID, Buffer.concat([Buffer.from([0]), o.clientUuid]));
  if (o.ipxe !== undefined) w.bytes(OptionCode.IPXE_ENCAPSULATED, encodeSubOptions(o.ipxe));
  for (const extra of o.other ?? []) w.bytes(extra.code, extra.data);
  return w.end();
}

/**
 * Serialises a packet. Options longer than 255 bytes are split into consecutive
 * instances (RFC 3396); the sname and file fields are never overloaded.
 */
export function serializeDhcpPacket(p: DhcpPacket): Buffer {
  const options = writeOptions(p.options);
  const buf = Buffer.alloc(Math.max(MIN_PACKET_LENGTH, OPTIONS_OFFSET + options.length));
  buf[0] = p.op;
  buf[1] = p.htype;
  buf[2] = p.hlen;
  buf[3] = p.hops;
  buf.writeUInt32BE(p.xid >>> 0, 4);
  buf.writeUInt16BE(p.secs, 8);
  buf.writeUInt16BE(p.flags, 10);
  writeIp(buf, 12, p.ciaddr);
  writeIp(buf, 16, p.yiaddr);
  writeIp(buf, 20, p.siaddr);
  writeIp(buf, 24, p.giaddr);
  p.chaddr.copy(buf, 28, 0, 16);
  if (p.sname) buf.write(p.sname, SNAME_OFFSET, SNAME_LENGTH, 'latin1');
  if (p.file) buf.write(p.file, FILE_OFFSET, FILE_LENGTH, 'latin1');
  buf.writeUInt32BE(MAGIC_COOKIE, HEADER_LENGTH);
  options.copy(buf, OPTIONS_OFFSET);
  return buf;
}
