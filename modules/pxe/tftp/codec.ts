// TFTP wire format: RFC 1350 packets, RFC 2347 option extension (OACK). The decoder is
// the edge for untrusted datagrams: every length is checked, and anything malformed
// comes back as a TftpDecodeFailure result; it never throws. The encoders take values
// our own code produced, so a bad argument there is a programming error and throws.

export const Opcode = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

export const ErrorCode = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  /** RFC 2347: the server or client refuses the options asked for. */
  OPTION_REFUSED: 8,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export type TransferMode = 'netascii' | 'octet' | 'mail';

/** RFC 2348 bounds on a block size; 512 is RFC 1350's fixed size. */
export const MIN_BLOCK_SIZE = 8;
export const MAX_BLOCK_SIZE = 65464;
export const DEFAULT_BLOCK_SIZE = 512;
/** Block numbers are 16 bits on the wire; past 65535 they wrap to 0 (what tftpd-hpa, curl and iPXE expect). */
export const BLOCK_NUMBER_MODULUS = 0x10000;

/** An option as sent: name lower-cased (RFC 2347 names are case-insensitive), value untouched. */
export interface TftpOption {
  name: string;
  value: string;
}

export interface RequestPacket {
  type: 'rrq' | 'wrq';
  filename: string;
  mode: TransferMode;
  /** In the order the client sent them; a repeated name keeps its first value. */
  options: TftpOption[];
}
export interface DataPacket {
  type: 'data';
  block: number;
  payload: Buffer;
}
export interface AckPacket {
  type: 'ack';
  block: number;
}
export interface ErrorPacket {
  type: 'error';
  code: number;
  message: string;
}
export interface OackPacket {
  type: 'oack';
  options: TftpOption[];
}
export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

export type TftpDecodeFailure =
  | 'too-short'
  | 'unknown-opcode'
  | 'bad-length'
  | 'unterminated-string'
  | 'invalid-utf8'
  | 'empty-filename'
  | 'unknown-mode'
  | 'option-without-value'
  | 'empty-option-name'
  | 'payload-too-long';

export type TftpDecodeResult =
  | { ok: true; packet: TftpPacket }
  | { ok: false; failure: TftpDecodeFailure; message: string; opcode?: number };

/** Thrown by the encoders for values no caller of ours should produce. */
export class TftpEncodeError extends Error {
  override readonly name = 'TftpEncodeError';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function fail(failure: TftpDecodeFailure, message: string, opcode?: number): TftpDecodeResult {
  return opcode === undefined ? { ok: false, failure, message } : { ok: false, failure, message, opcode };
}

/** Splits the NUL-terminated strings from `offset` to the end; fails if the last one has no NUL. */
function readStrings(buffer: Buffer, offset: number): { ok: true; strings: string[] } | { ok: false; failure: TftpDecodeFailure } {
  const strings: string[] = [];
  let start = offset;
  while (start < buffer.length) {
    const end = buffer.indexOf(0, start);
    if (end < 0) return { ok: false, failure: 'unterminated-string' };
    try {
      strings.push(utf8.decode(buffer.subarray(start, end)));
    } catch {
      return { ok: false, failure: 'invalid-utf8' };
    }
    start = end + 1;
  }
  return { ok: true, strings };
}

function readOptions(pairs: string[], opcode: number): { ok: true; options: TftpOption[] } | { ok: false; result: TftpDecodeResult } {
  if (pairs.length % 2 !== 0) {
    return { ok: false, result: fail('option-without-value', `option ${pairs[pairs.length - 1]} has no value`, opcode) };
  }
  const options: TftpOption[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i]!.toLowerCase();
    if (name.length === 0) return { ok: false, result: fail('empty-option-name', 'an option has an empty name', opcode) };
    if (seen.has(name)) continue;
    seen.add(name);
    options.push({ name, value: pairs[i + 1]! });
  }
  return { ok: true, options };
}

export function decodePacket(buffer: Buffer): TftpDecodeResult {
  if (buffer.length < 2) return fail('too-short', `${buffer.length}-byte datagram has no opcode`);
  const opcode = buffer.readUInt16BE(0);
  switch (opcode) {
    case Opcode.RRQ:
    case Opcode.WRQ: {
      const read = readStrings(buffer, 2);
      if (!read.ok) return fail(read.failure, 'request strings are malformed', opcode);
      const [filename, mode, ...pairs] = read.strings;
      if (filename === undefined || mode === undefined) return fail('too-short', 'request lacks a filename or mode', opcode);
      if (filename.length === 0) return fail('empty-filename', 'request names no file', opcode);
      const modeName = mode.toLowerCase();
      if (modeName !== 'netascii' && modeName !== 'octet' && modeName !== 'mail') {
        return fail('unknown-mode', `unknown transfer mode ${JSON.stringify(mode)}`, opcode);
      }
      const options = readOptions(pairs, opcode);
      if (!options.ok) return options.result;
      return { ok: true, packet: { type: opcode === Opcode.RRQ ? 'rrq' : 'wrq', filename, mode: modeName, options: options.options } };
    }
    case Opcode.DATA: {
      if (buffer.length < 4) return fail('too-short', 'DATA lacks a block number', opcode);
      if (buffer.length - 4 > MAX_BLOCK_SIZE) return fail('payload-too-long', `DATA carries ${buffer.length - 4} bytes`, opcode);
      return { ok: true, packet: { type: 'data', block: buffer.readUInt16BE(2), payload: buffer.subarray(4) } };
    }
    case Opcode.ACK: {
      if (buffer.length !== 4) return fail('bad-length', `ACK is ${buffer.length} bytes, not 4`, opcode);
      return { ok: true, packet: { type: 'ack', block: buffer.readUInt16BE(2) } };
    }
    case Opcode.ERROR: {
      if (buffer.length < 4) return fail('too-short', 'ERROR lacks a code', opcode);
      // Some peers leave off the message's NUL; the message is only ever logged, so take what is there.
      const end = buffer.indexOf(0, 4);
      const raw = buffer.subarray(4, end < 0 ? buffer.length : end);
      let message: string;
      try {
        message = utf8.decode(raw);
      } catch {
        message = raw.toString('latin1');
      }
      return { ok: true, packet: { type: 'error', code: buffer.readUInt16BE(2), message } };
    }
    case Opcode.OACK: {
      const read = readStrings(buffer, 2);
      if (!read.ok) return fail(read.failure, 'OACK strings are malformed', opcode);
      const options = readOptions(read.strings, opcode);
      if (!options.ok) return options.result;
      return { ok: true, packet: { type: 'oack', options: options.options } };
    }
    default:
      return fail('unknown-opcode', `unknown opcode ${opcode}`);
  }
}

function checkBlock(block: number): void {
  if (!Number.isInteger(block) || block < 0 || block >= BLOCK_NUMBER_MODULUS) {
    throw new TftpEncodeError(`block number ${block} is not a 16-bit unsigned integer`);
  }
}

function checkString(value: string, what: string): Buffer {
  if (value.includes('\0')) throw new TftpEncodeError(`${what} contains a NUL`);
  return Buffer.from(value, 'utf8');
}

function encodeStrings(opcode: number, strings: string[]): Buffer {
  const parts = strings.map((s) => checkString(s, 'a string field'));
  const packet = Buffer.allocUnsafe(2 + parts.reduce((sum, part) => sum + part.length + 1, 0));
  packet.writeUInt16BE(opcode, 0);
  let offset = 2;
  for (const part of parts) {
    offset += part.copy(packet, offset);
    packet[offset++] = 0;
  }
  return packet;
}

export function encodeRequest(request: Omit<RequestPacket, 'type'> & { type: 'rrq' | 'wrq' }): Buffer {
  if (request.filename.length === 0) throw new TftpEncodeError('a request must name a file');
  return encodeStrings(request.type === 'rrq' ? Opcode.RRQ : Opcode.WRQ, [
    request.filename,
    request.mode,
    ...request.options.flatMap((o) => [o.name, o.value]),
  ]);
}

/** Header and payload in one buffer, so a window can keep it for retransmission as is. */
export function encodeData(block: number, payload: Uint8Array): Buffer {
  checkBlock(block);
  if (payload.length > MAX_BLOCK_SIZE) throw new TftpEncodeError(`DATA payload of ${payload.length} bytes exceeds ${MAX_BLOCK_SIZE}`);
  const packet = Buffer.allocUnsafe(4 + payload.length);
  packet.writeUInt16BE(Opcode.DATA, 0);
  packet.writeUInt16BE(block, 2);
  packet.set(payload, 4);
  return packet;
}

export function encodeAck(block: number): Buffer {
  checkBlock(block);
  const packet = Buffer.allocUnsafe(4);
  packet.writeUInt16BE(Opcode.ACK, 0);
  packet.writeUInt16BE(block, 2);
  return packet;
}

export function encodeError(code: number, message: string): Buffer {
  if (!Number.isInteger(code) || code < 0 || code > 0xffff) throw new TftpEncodeError(`error code ${code} is not 16-bit`);
  const text = checkString(message, 'an error message');
  const packet = Buffer.allocUnsafe(5 + text.length);
  packet.writeUInt16BE(Opcode.ERROR, 0);
  packet.writeUInt16BE(code, 2);
  text.copy(packet, 4);
  packet[4 + text.length] = 0;
  return packet;
}

export function encodeOack(options: TftpOption[]): Buffer {
  if (options.length === 0) throw new TftpEncodeError('an OACK must carry at least one option');
  return encodeStrings(
    Opcode.OACK,
    options.flatMap((o) => [o.name, o.value]),
  );
}

export function encodePacket(packet: TftpPacket): Buffer {
  switch (packet.type) {
    case 'rrq':
    case 'wrq':
      return encodeRequest(packet);
    case 'data':
      return encodeData(packet.block, packet.payload);
    case 'ack':
      return encodeAck(packet.block);
    case 'error':
      return encodeError(packet.code, packet.message);
    case 'oack':
      return encodeOack(packet.options);
  }
}

// ---- Block numbering across the 16-bit rollover ----

/** The 16-bit number a block carries on the wire; `absolute` counts from 1 without wrapping. */
export function wireBlock(absolute: number): number {
  return absolute % BLOCK_NUMBER_MODULUS;
}

/**
 * The absolute block an ACK acknowledges, or undefined when it lies outside what may be
 * acknowledged now: at least `lastAcked` (a duplicate) and at most `lastSent`. Windows are
 * far shorter than 65536 blocks, so the one candidate in that range is unambiguous.
 */
export function absoluteAckedBlock(wire: number, lastAcked: number, lastSent: number): number | undefined {
  const absolute = lastAcked + ((wire - wireBlock(lastAcked) + BLOCK_NUMBER_MODULUS) % BLOCK_NUMBER_MODULUS);
  return absolute <= lastSent ? absolute : undefined;
}

/** Blocks needed for `size` bytes: the last is always short, so a size that fills whole blocks ends with an empty one. */
export function blockCount(size: number, blockSize: number): number {
  return Math.floor(size / blockSize) + 1;
}
