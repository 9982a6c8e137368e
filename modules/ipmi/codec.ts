// IPMI v2.0 over LAN wire format: RMCP framing, IPMI 1.5 and RMCP+ session headers, the
// IPMI message inside them, the RMCP+ session set-up payloads (Open Session, RAKP 1-4) and
// the cryptography of cipher suites 3 and 17. Pure functions over bytes: no sockets, no
// clocks, so every branch is unit-testable. Every decoder checks every length and fixed
// field and throws IpmiMalformedReplyError; nothing here trusts a byte it has not checked.
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import { IpmiMalformedReplyError } from './errors.js';

// ---------------------------------------------------------------------------------------
// Bounds-checked reading

/** Reads fields from a reply in order; any read past the end is a malformed reply. */
export class ByteReader {
  private offset = 0;
  constructor(
    private readonly bytes: Buffer,
    private readonly what: string,
  ) {}

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  private need(count: number, field: string): void {
    if (this.remaining < count) {
      throw new IpmiMalformedReplyError(
        `${this.what}: ${field} needs ${count} byte(s) at offset ${this.offset}, only ${this.remaining} left`,
      );
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.bytes[this.offset++]!;
  }

  u16le(field: string): number {
    this.need(2, field);
    const value = this.bytes.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  }

  u32le(field: string): number {
    this.need(4, field);
    const value = this.bytes.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  }

  bytesOf(count: number, field: string): Buffer {
    this.need(count, field);
    const slice = this.bytes.subarray(this.offset, this.offset + count);
    this.offset += count;
    return slice;
  }

  rest(): Buffer {
    const slice = this.bytes.subarray(this.offset);
    this.offset = this.bytes.length;
    return slice;
  }

  expectEnd(): void {
    if (this.remaining !== 0) throw new IpmiMalformedReplyError(`${this.what}: ${this.remaining} unexpected trailing byte(s)`);
  }
}

function malformed(detail: string): never {
  throw new IpmiMalformedReplyError(detail);
}

// ---------------------------------------------------------------------------------------
// IPMI message (IPMI v2.0 section 13.8): the request/response inside a session packet

/** Address of the BMC on the IPMB, the responder of every request we send. */
export const BMC_ADDRESS = 0x20;
/** Software ID of a remote console, our address as requester. */
export const REMOTE_CONSOLE_ADDRESS = 0x81;

/** Two's-complement checksum: the byte that makes the covered bytes sum to zero mod 256. */
export function ipmiChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const byte of bytes) sum = (sum + byte) & 0xff;
  return (0x100 - sum) & 0xff;
}

export interface IpmiRequest {
  netFn: number;
  command: number;
  /** 6-bit requester sequence number; matches a response to its request. */
  rqSeq: number;
  data: Uint8Array;
}

export interface IpmiResponse {
  netFn: number;
  command: number;
  rqSeq: number;
  completionCode: number;
  data: Buffer;
}

export function encodeIpmiRequest(request: IpmiRequest): Buffer {
  const header = Buffer.from([BMC_ADDRESS, (request.netFn << 2) & 0xfc]);
  const body = Buffer.concat([
    Buffer.from([REMOTE_CONSOLE_ADDRESS, (request.rqSeq << 2) & 0xfc, request.command]),
    request.data,
  ]);
  return Buffer.concat([header, Buffer.from([ipmiChecksum(header)]), body, Buffer.from([ipmiChecksum(body)])]);
}

/** Decodes a response and checks both checksums and the addresses. */
export function decodeIpmiResponse(bytes: Buffer): IpmiResponse {
  // rqAddr, netFn/LUN, checksum, rsAddr, rqSeq/LUN, command, completion code, checksum
  if (bytes.length < 8) malformed(`IPMI response is ${bytes.length} bytes, the minimum is 8`);
  if (ipmiChecksum(bytes.subarray(0, 2)) !== bytes[2]) malformed('IPMI response header checksum mismatch');
  if (ipmiChecksum(bytes.subarray(3, bytes.length - 1)) !== bytes[bytes.length - 1]) {
    malformed('IPMI response data checksum mismatch');
  }
  if (bytes[0] !== REMOTE_CONSOLE_ADDRESS) malformed(`IPMI response addressed to 0x${bytes[0]!.toString(16)}, not to us`);
  if (bytes[3] !== BMC_ADDRESS) malformed(`IPMI response from 0x${bytes[3]!.toString(16)}, not from the BMC`);
  return {
    netFn: bytes[1]! >> 2,
    rqSeq: bytes[4]! >> 2,
    command: bytes[5]!,
    completionCode: bytes[6]!,
    data: bytes.subarray(7, bytes.length - 1),
  };
}

// ---------------------------------------------------------------------------------------
// RMCP and session headers (IPMI v2.0 sections 13.1-13.6)

const RMCP_VERSION_1_0 = 0x06;
/** RMCP sequence number meaning "send no RMCP ACK", what IPMI messages always use. */
const RMCP_SEQUENCE_NO_ACK = 0xff;
const RMCP_CLASS_IPMI = 0x07;
const AUTH_TYPE_NONE = 0x00;
const AUTH_TYPE_RMCP_PLUS = 0x06;
/** Next-header byte of the RMCP+ integrity trailer; the spec fixes it to 0x07. */
const NEXT_HEADER_RMCP = 0x07;

export const PayloadType = {
  ipmi: 0x00,
  openSessionRequest: 0x10,
  openSessionResponse: 0x11,
  rakp1: 0x12,
  rakp2: 0x13,
  rakp3: 0x14,
  rakp4: 0x15,
} as const;

const RMCP_HEADER = Buffer.from([RMCP_VERSION_1_0, 0x00, RMCP_SEQUENCE_NO_ACK, RMCP_CLASS_IPMI]);

/**
 * An IPMI 1.5 packet outside any session (auth type none, session 0, sequence 0). Used for
 * Get Channel Authentication Capabilities, which every BMC answers before a session exists.
 */
export function encodeSessionlessV15Packet(message: Buffer): Buffer {
  if (message.length > 0xff) throw new RangeError('IPMI 1.5 message longer than 255 bytes');
  const header = Buffer.alloc(10);
  header[0] = AUTH_TYPE_NONE; // sequence (1..4) and session ID (5..8) stay zero
  header[9] = message.length;
  return Buffer.concat([RMCP_HEADER, header, message]);
}

export interface OutboundV20Packet {
  payloadType: number;
  /** The BMC's session ID; 0 before the session exists. */
  sessionId: number;
  sequence: number;
  payload: Buffer;
}

/** An unauthenticated, unencrypted RMCP+ packet: the session set-up messages. */
export function encodeV20Packet(packet: OutboundV20Packet): Buffer {
  const header = Buffer.alloc(12);
  header[0] = AUTH_TYPE_RMCP_PLUS;
  header[1] = packet.payloadType & 0x3f;
  header.writeUInt32LE(packet.sessionId >>> 0, 2);
  header.writeUInt32LE(packet.sequence >>> 0, 6);
  header.writeUInt16LE(packet.payload.length, 10);
  return Buffer.concat([RMCP_HEADER, header, packet.payload]);
}

/**
 * An encrypted and authenticated RMCP+ packet of an active session. `iv` is the AES
 * initialisation vector: random per packet in use, fixed in tests.
 */
export function encodeSecureV20Packet(packet: OutboundV20Packet, keys: SessionKeys, iv: Buffer): Buffer {
  const payload = encryptAesCbc128(keys.aesKey, packet.payload, iv);
  const header = Buffer.alloc(12);
  header[0] = AUTH_TYPE_RMCP_PLUS;
  header[1] = 0xc0 | (packet.payloadType & 0x3f); // encrypted + authenticated
  header.writeUInt32LE(packet.sessionId >>> 0, 2);
  header.writeUInt32LE(packet.sequence >>> 0, 6);
  header.writeUInt16LE(payload.length, 10);
  // The integrity pad makes auth type .. next header a multiple of 4 bytes.
  const padLength = (4 - ((header.length + payload.length + 2) % 4)) % 4;
  const trailer = Buffer.alloc(padLength + 2, 0xff);
  trailer[padLength] = padLength;
  trailer[padLength + 1] = NEXT_HEADER_RMCP;
  const signed = Buffer.concat([header, payload, trailer]);
  return Buffer.concat([RMCP_HEADER, signed, integrityCode(keys, signed)]);
}

/** A received packet with its framing checked; payloads of secure packets are still sealed. */
export type InboundPacket =
  | { format: 'ipmi-1.5'; sessionId: number; sequence: number; payload: Buffer }
  | {
      format: 'rmcp+';
      payloadType: number;
      encrypted: boolean;
      authenticated: boolean;
      sessionId: number;
      sequence: number;
      payload: Buffer;
      /** The whole datagram, needed to check the integrity trailer. */
      datagram: Buffer;
      /** Offset of the byte after the payload, where the integrity trailer starts. */
      payloadEnd: number;
    };

/** Checks RMCP and session framing of a datagram. Throws IpmiMalformedReplyError on anything odd. */
export function decodePacket(datagram: Buffer): InboundPacket {
  const reader = new ByteReader(datagram, 'RMCP packet');
  const version = reader.u8('RMCP version');
  reader.u8('RMCP reserved byte');
  reader.u8('RMCP sequence');
  const rmcpClass = reader.u8('RMCP class');
  if (version !== RMCP_VERSION_1_0) malformed(`RMCP version 0x${version.toString(16)}, expected 0x06`);
  if ((rmcpClass & 0x1f) !== RMCP_CLASS_IPMI) malformed(`RMCP class 0x${rmcpClass.toString(16)} is not IPMI`);
  const authType = reader.u8('auth type') & 0x0f;
  if (authType === AUTH_TYPE_RMCP_PLUS) {
    const typeByte = reader.u8('payload type');
    const payloadType = typeByte & 0x3f;
    if (payloadType === 0x02) malformed('OEM explicit payloads are not supported');
    const sessionId = reader.u32le('session ID');
    const sequence = reader.u32le('session sequence');
    const length = reader.u16le('payload length');
    const payload = reader.bytesOf(length, 'payload');
    const authenticated = (typeByte & 0x40) !== 0;
    if (!authenticated) reader.expectEnd();
    return {
      format: 'rmcp+',
      payloadType,
      encrypted: (typeByte & 0x80) !== 0,
      authenticated,
      sessionId,
      sequence,
      payload,
      datagram,
      payloadEnd: datagram.length - reader.remaining,
    };
  }
  const sequence = reader.u32le('session sequence');
  const sessionId = reader.u32le('session ID');
  // IPMI 1.5 carries a 16-byte auth code whenever the auth type is not "none".
  if (authType !== AUTH_TYPE_NONE) reader.bytesOf(16, 'auth code');
  const length = reader.u8('message length');
  const payload = reader.bytesOf(length, 'message');
  reader.expectEnd();
  return { format: 'ipmi-1.5', sessionId, sequence, payload };
}

/**
 * Checks the integrity trailer of a secure RMCP+ packet and decrypts its payload. A session
 * packet that is not both authenticated and encrypted is refused: we only ever ask for both.
 */
export function openSecurePayload(packet: Extract<InboundPacket, { format: 'rmcp+' }>, keys: SessionKeys): Buffer {
  if (!packet.authenticated || !packet.encrypted) malformed('session reply is not authenticated and encrypted');
  const { datagram, payloadEnd } = packet;
  const codeLength = keys.suite.integrity.codeLength;
  const trailerLength = datagram.length - payloadEnd - codeLength;
  if (trailerLength < 2) malformed(`integrity trailer is ${datagram.length - payloadEnd} bytes, too short`);
  const padLength = datagram[payloadEnd + trailerLength - 2]!;
  if (padLength !== trailerLength - 2 || padLength > 3) malformed(`integrity pad length ${padLength} does not fit the trailer`);
  for (let i = payloadEnd; i < payloadEnd + padLength; i++) {
    if (datagram[i] !== 0xff) malformed('integrity pad byte is not 0xff');
  }
  if (datagram[payloadEnd + trailerLength - 1] !== NEXT_HEADER_RMCP) malformed('integrity trailer next header is not 0x07');
  const signed = datagram.subarray(4, payloadEnd + trailerLength);
  const received = datagram.subarray(payloadEnd + trailerLength);
  if (!timingSafeEqual(integrityCode(keys, signed), received)) malformed('integrity code mismatch');
  return decryptAesCbc128(keys.aesKey, packet.payload);
}

// ---------------------------------------------------------------------------------------
// RMCP/ASF presence ping (DMTF ASF 2.0 section 3.2.4): "is a BMC listening here?", no session

const RMCP_CLASS_ASF = 0x06;
/** ASF's IANA enterprise number, big-endian on the wire like all ASF fields. */
const ASF_IANA = 4542;
const ASF_PRESENCE_PING = 0x80;
const ASF_PRESENCE_PONG = 0x40;

export function encodeAsfPresencePing(tag: number): Buffer {
  const packet = Buffer.alloc(12);
  packet.set([RMCP_VERSION_1_0, 0x00, RMCP_SEQUENCE_NO_ACK, RMCP_CLASS_ASF]);
  packet.writeUInt32BE(ASF_IANA, 4);
  packet[8] = ASF_PRESENCE_PING;
  packet[9] = tag;
  return packet; // reserved byte and data length stay 0
}

export interface AsfPresencePong {
  tag: number;
  /** The entity answering supports IPMI (bit 7 of supported entities). */
  ipmi: boolean;
}

export function decodeAsfPresencePong(datagram: Buffer): AsfPresencePong {
  const reader = new ByteReader(datagram, 'ASF presence pong');
  if (reader.u8('RMCP version') !== RMCP_VERSION_1_0) malformed('ASF presence pong: RMCP version is not 0x06');
  reader.u8('RMCP reserved byte');
  reader.u8('RMCP sequence');
  if ((reader.u8('RMCP class') & 0x1f) !== RMCP_CLASS_ASF) malformed('ASF presence pong: RMCP class is not ASF');
  if (reader.bytesOf(4, 'IANA number').readUInt32BE() !== ASF_IANA) malformed('ASF presence pong: IANA number is not 4542');
  if (reader.u8('message type') !== ASF_PRESENCE_PONG) malformed('ASF presence pong: message type is not 0x40');
  const tag = reader.u8('message tag');
  reader.u8('reserved byte');
  const length = reader.u8('data length');
  if (length !== 16) malformed(`ASF presence pong: data length ${length}, expected 16`);
  reader.bytesOf(8, 'OEM IANA number and OEM-defined data');
  const entities = reader.u8('supported entities');
  reader.bytesOf(7, 'supported interactions and reserved bytes');
  reader.expectEnd();
  return { tag, ipmi: (entities & 0x80) !== 0 };
}

// ---------------------------------------------------------------------------------------
// Cipher suites and keys (IPMI v2.0 sections 13.28-13.32, table 22-19)

export interface CipherSuite {
  id: 3 | 17;
  authentication: {
    /** Authentication algorithm number in the Open Session payload. */
    id: number;
    hash: 'sha1' | 'sha256';
    /** Length of the RAKP 2/3 key exchange codes, the SIK, K1 and K2: the full HMAC output. */
    keyLength: number;
    /** Length of the RAKP 4 integrity check value (truncated HMAC). */
    rakp4Length: number;
  };
  integrity: { id: number; hash: 'sha1' | 'sha256'; codeLength: number };
  confidentiality: { id: number };
}

/** Suite 3 is what every IPMI 2.0 BMC speaks; 17 is the SHA-256 variant newer BMCs prefer. */
export const CIPHER_SUITES: Readonly<Record<3 | 17, CipherSuite>> = {
  3: {
    id: 3,
    authentication: { id: 0x01, hash: 'sha1', keyLength: 20, rakp4Length: 12 },
    integrity: { id: 0x01, hash: 'sha1', codeLength: 12 },
    confidentiality: { id: 0x01 },
  },
  17: {
    id: 17,
    authentication: { id: 0x03, hash: 'sha256', keyLength: 32, rakp4Length: 16 },
    integrity: { id: 0x04, hash: 'sha256', codeLength: 16 },
    confidentiality: { id: 0x01 },
  },
};

export interface SessionKeys {
  suite: CipherSuite;
  /** Integrity key K1 = HMAC(SIK, 0x01 * n). */
  k1: Buffer;
  /** AES-128 key: the first 16 bytes of K2 = HMAC(SIK, 0x02 * n). */
  aesKey: Buffer;
}

function hmac(hash: 'sha1' | 'sha256', key: Buffer, ...parts: Buffer[]): Buffer {
  const mac = createHmac(hash, key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

export function integrityCode(keys: SessionKeys, signed: Buffer): Buffer {
  const { hash, codeLength } = keys.suite.integrity;
  return hmac(hash, keys.k1, signed).subarray(0, codeLength);
}

export function deriveSessionKeys(suite: CipherSuite, sik: Buffer): SessionKeys {
  const { hash, keyLength } = suite.authentication;
  const k1 = hmac(hash, sik, Buffer.alloc(keyLength, 0x01));
  const k2 = hmac(hash, sik, Buffer.alloc(keyLength, 0x02));
  return { suite, k1, aesKey: k2.subarray(0, 16) };
}

/** AES-CBC-128 payload: IV, then data + pad bytes 1,2,3.. + pad length, a multiple of 16. */
export function encryptAesCbc128(key: Buffer, plaintext: Buffer, iv: Buffer): Buffer {
  if (iv.length !== 16) throw new RangeError('AES-CBC-128 needs a 16-byte IV');
  const padLength = (16 - ((plaintext.length + 1) % 16)) % 16;
  const pad = Buffer.alloc(padLength + 1);
  for (let i = 0; i < padLength; i++) pad[i] = i + 1;
  pad[padLength] = padLength;
  const cipher = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
  return Buffer.concat([iv, cipher.update(Buffer.concat([plaintext, pad])), cipher.final()]);
}

export function decryptAesCbc128(key: Buffer, payload: Buffer): Buffer {
  if (payload.length < 32 || payload.length % 16 !== 0) {
    malformed(`encrypted payload is ${payload.length} bytes, not an IV plus whole AES blocks`);
  }
  const decipher = createDecipheriv('aes-128-cbc', key, payload.subarray(0, 16)).setAutoPadding(false);
  const plain = Buffer.concat([decipher.update(payload.subarray(16)), decipher.final()]);
  const padLength = plain[plain.length - 1]!;
  if (padLength > 15) malformed(`confidentiality pad length ${padLength} exceeds 15`);
  const dataLength = plain.length - 1 - padLength;
  for (let i = 0; i < padLength; i++) {
    if (plain[dataLength + i] !== i + 1) malformed('confidentiality pad bytes are not 1, 2, 3, ...');
  }
  return plain.subarray(0, dataLength);
}

// ---------------------------------------------------------------------------------------
// RAKP key exchange (IPMI v2.0 section 13.31)

/** Everything both sides know once RAKP 2 has arrived. */
export interface RakpContext {
  suite: CipherSuite;
  consoleSessionId: number;
  bmcSessionId: number;
  consoleRandom: Buffer;
  bmcRandom: Buffer;
  bmcGuid: Buffer;
  /** The RAKP 1 role byte as sent: privilege level plus the name-only lookup bit. */
  role: number;
  username: Buffer;
  /** Kuid: the user's password. HMAC zero-pads keys, so no padding is needed here. */
  password: Buffer;
  /** Kg, the BMC key; when the BMC has none it is Kuid. */
  bmcKey: Buffer | undefined;
}

function u32le(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value >>> 0);
  return bytes;
}

/** The code the BMC sends in RAKP 2, proving it knows the password. */
export function rakp2KeyExchangeCode(ctx: RakpContext): Buffer {
  return hmac(
    ctx.suite.authentication.hash,
    ctx.password,
    u32le(ctx.consoleSessionId),
    u32le(ctx.bmcSessionId),
    ctx.consoleRandom,
    ctx.bmcRandom,
    ctx.bmcGuid,
    Buffer.from([ctx.role, ctx.username.length]),
    ctx.username,
  );
}

/** The code we send in RAKP 3, proving we know the password. */
export function rakp3KeyExchangeCode(ctx: RakpContext): Buffer {
  return hmac(
    ctx.suite.authentication.hash,
    ctx.password,
    ctx.bmcRandom,
    u32le(ctx.consoleSessionId),
    Buffer.from([ctx.role, ctx.username.length]),
    ctx.username,
  );
}

/** Session Integrity Key, from which K1 and K2 derive. */
export function sessionIntegrityKey(ctx: RakpContext): Buffer {
  return hmac(
    ctx.suite.authentication.hash,
    ctx.bmcKey ?? ctx.password,
    ctx.consoleRandom,
    ctx.bmcRandom,
    Buffer.from([ctx.role, ctx.username.length]),
    ctx.username,
  );
}

/** The value the BMC sends in RAKP 4, proving it derived the same SIK. */
export function rakp4IntegrityCheckValue(ctx: RakpContext, sik: Buffer): Buffer {
  const { hash, rakp4Length } = ctx.suite.authentication;
  return hmac(hash, sik, ctx.consoleRandom, u32le(ctx.bmcSessionId), ctx.bmcGuid).subarray(0, rakp4Length);
}

// ---------------------------------------------------------------------------------------
// Session set-up payloads (IPMI v2.0 sections 13.17-13.23)

export interface OpenSessionRequest {
  tag: number;
  /** Maximum privilege level asked for (2 user, 3 operator, 4 administrator). */
  privilege: number;
  consoleSessionId: number;
  suite: CipherSuite;
}

export function encodeOpenSessionRequest(request: OpenSessionRequest): Buffer {
  const payload = Buffer.alloc(32);
  payload[0] = request.tag;
  payload[1] = request.privilege;
  payload.writeUInt32LE(request.consoleSessionId >>> 0, 4);
  // Three algorithm records: type, 2 reserved, length 8, algorithm, 3 reserved.
  const algorithms = [request.suite.authentication.id, request.suite.integrity.id, request.suite.confidentiality.id];
  algorithms.forEach((algorithm, type) => {
    const at = 8 + type * 8;
    payload[at] = type;
    payload[at + 3] = 8;
    payload[at + 4] = algorithm;
  });
  return payload;
}

export type OpenSessionResponse =
  | { tag: number; status: 0; privilege: number; consoleSessionId: number; bmcSessionId: number; algorithms: [number, number, number] }
  | { tag: number; status: number };

export function decodeOpenSessionResponse(payload: Buffer): OpenSessionResponse {
  const reader = new ByteReader(payload, 'Open Session Response');
  const tag = reader.u8('message tag');
  const status = reader.u8('status code');
  // On error a BMC may stop after the status (the rest is optional there).
  if (status !== 0) return { tag, status };
  const privilege = reader.u8('privilege level') & 0x0f;
  reader.u8('reserved byte');
  const consoleSessionId = reader.u32le('remote console session ID');
  const bmcSessionId = reader.u32le('managed system session ID');
  if (bmcSessionId === 0) malformed('Open Session Response: managed system session ID is 0');
  const algorithms: number[] = [];
  for (let type = 0; type < 3; type++) {
    const record = reader.bytesOf(8, `algorithm record ${type}`);
    if (record[0] !== type) malformed(`Open Session Response: algorithm record ${type} has type ${record[0]}`);
    if (record[3] !== 8) malformed(`Open Session Response: algorithm record ${type} has length ${record[3]}`);
    algorithms.push(record[4]! & 0x3f);
  }
  reader.expectEnd();
  return { tag, status: 0, privilege, consoleSessionId, bmcSessionId, algorithms: algorithms as [number, number, number] };
}

export interface Rakp1 {
  tag: number;
  bmcSessionId: number;
  consoleRandom: Buffer;
  role: number;
  username: Buffer;
}

export function encodeRakp1(message: Rakp1): Buffer {
  if (message.consoleRandom.length !== 16) throw new RangeError('RAKP 1 random number must be 16 bytes');
  if (message.username.length > 16) throw new RangeError('IPMI user names are at most 16 bytes');
  const payload = Buffer.alloc(28 + message.username.length);
  payload[0] = message.tag;
  payload.writeUInt32LE(message.bmcSessionId >>> 0, 4);
  message.consoleRandom.copy(payload, 8);
  payload[24] = message.role;
  payload[27] = message.username.length;
  message.username.copy(payload, 28);
  return payload;
}

export type Rakp2 =
  | { tag: number; status: 0; consoleSessionId: number; bmcRandom: Buffer; bmcGuid: Buffer; keyExchangeCode: Buffer }
  | { tag: number; status: number };

export function decodeRakp2(payload: Buffer, suite: CipherSuite): Rakp2 {
  const reader = new ByteReader(payload, 'RAKP 2');
  const tag = reader.u8('message tag');
  const status = reader.u8('status code');
  if (status !== 0) return { tag, status };
  reader.u16le('reserved bytes');
  const consoleSessionId = reader.u32le('remote console session ID');
  const bmcRandom = reader.bytesOf(16, 'managed system random number');
  const bmcGuid = reader.bytesOf(16, 'managed system GUID');
  const keyExchangeCode = reader.bytesOf(suite.authentication.keyLength, 'key exchange authentication code');
  reader.expectEnd();
  return { tag, status: 0, consoleSessionId, bmcRandom, bmcGuid, keyExchangeCode };
}

export interface Rakp3 {
  tag: number;
  /** 0, or the RMCP+ status telling the BMC why we abandon the exchange. */
  status: number;
  bmcSessionId: number;
  /** Empty when status is not 0. */
  keyExchangeCode: Buffer;
}

export function encodeRakp3(message: Rakp3): Buffer {
  const payload = Buffer.alloc(8 + message.keyExchangeCode.length);
  payload[0] = message.tag;
  payload[1] = message.status;
  payload.writeUInt32LE(message.bmcSessionId >>> 0, 4);
  message.keyExchangeCode.copy(payload, 8);
  return payload;
}

export type Rakp4 = { tag: number; status: 0; consoleSessionId: number; integrityCheckValue: Buffer } | { tag: number; status: number };

export function decodeRakp4(payload: Buffer, suite: CipherSuite): Rakp4 {
  const reader = new ByteReader(payload, 'RAKP 4');
  const tag = reader.u8('message tag');
  const status = reader.u8('status code');
  if (status !== 0) return { tag, status };
  reader.u16le('reserved bytes');
  const consoleSessionId = reader.u32le('remote console session ID');
  const integrityCheckValue = reader.bytesOf(suite.authentication.rakp4Length, 'integrity check value');
  reader.expectEnd();
  return { tag, status: 0, consoleSessionId, integrityCheckValue };
}
