// The TFTP codec on its own: exact bytes of each packet type, round trips, and every way a
// datagram can be malformed, each rejected with a failure code and a message that says what.
import { describe, expect, it } from 'vitest';
import {
  absoluteAckedBlock,
  blockCount,
  decodePacket,
  encodeAck,
  encodeData,
  encodeError,
  encodeOack,
  encodePacket,
  encodeRequest,
  MAX_BLOCK_SIZE,
  TftpEncodeError,
  wireBlock,
  type TftpDecodeFailure,
  type TftpPacket,
} from './codec.js';

const bytes = (...parts: (number[] | string)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

function decoded(buffer: Buffer): TftpPacket {
  const result = decodePacket(buffer);
  if (!result.ok) throw new Error(`expected a packet, got ${result.failure}: ${result.message}`);
  return result.packet;
}

function rejected(buffer: Buffer): { failure: TftpDecodeFailure; message: string; opcode?: number } {
  const result = decodePacket(buffer);
  if (result.ok) throw new Error(`expected a rejection, got ${JSON.stringify(result.packet)}`);
  return result;
}

describe('encoding', () => {
  it('writes an RRQ with options exactly as RFC 1350 and 2347 lay it out', () => {
    const packet = encodeRequest({ type: 'rrq', filename: 'boot/snponly.efi', mode: 'octet', options: [{ name: 'tsize', value: '0' }, { name: 'blksize', value: '1468' }] });
    expect(packet).toEqual(bytes([0, 1], 'boot/snponly.efi\0octet\0tsize\x000\0blksize\x001468\0'));
  });

  it('writes a WRQ with opcode 2', () => {
    expect(encodeRequest({ type: 'wrq', filename: 'up.txt', mode: 'netascii', options: [] })).toEqual(bytes([0, 2], 'up.txt\0netascii\0'));
  });

  it('writes DATA, ACK, ERROR and OACK', () => {
    expect(encodeData(0x1234, Buffer.from('abc'))).toEqual(bytes([0, 3, 0x12, 0x34], 'abc'));
    expect(encodeData(1, Buffer.alloc(0))).toEqual(bytes([0, 3, 0, 1]));
    expect(encodeAck(65535)).toEqual(bytes([0, 4, 0xff, 0xff]));
    expect(encodeError(1, 'File not found')).toEqual(bytes([0, 5, 0, 1], 'File not found\0'));
    expect(encodeOack([{ name: 'tsize', value: '8388608' }])).toEqual(bytes([0, 6], 'tsize\x008388608\0'));
  });

  it('round-trips every packet type through decode', () => {
    const packets: TftpPacket[] = [
      { type: 'rrq', filename: 'pxelinux.0', mode: 'octet', options: [{ name: 'blksize', value: '1432' }, { name: 'tsize', value: '0' }] },
      { type: 'wrq', filename: 'x', mode: 'netascii', options: [] },
      { type: 'data', block: 65535, payload: Buffer.from([1, 2, 3, 0, 255]) },
      { type: 'ack', block: 0 },
      { type: 'error', code: 8, message: 'User aborted the transfer' },
      { type: 'oack', options: [{ name: 'windowsize', value: '4' }] },
    ];
    for (const packet of packets) expect(decoded(encodePacket(packet))).toEqual(packet);
  });

  it('refuses values our own code must never produce', () => {
    expect(() => encodeAck(-1)).toThrow(TftpEncodeError);
    expect(() => encodeAck(65536)).toThrow(/not a 16-bit/);
    expect(() => encodeData(1.5, Buffer.alloc(1))).toThrow(/not a 16-bit/);
    expect(() => encodeData(1, Buffer.alloc(MAX_BLOCK_SIZE + 1))).toThrow(/exceeds 65464/);
    expect(() => encodeError(70000, 'x')).toThrow(/not 16-bit/);
    expect(() => encodeError(0, 'a\0b')).toThrow(/contains a NUL/);
    expect(() => encodeRequest({ type: 'rrq', filename: '', mode: 'octet', options: [] })).toThrow(/must name a file/);
    expect(() => encodeRequest({ type: 'rrq', filename: 'a\0b', mode: 'octet', options: [] })).toThrow(/contains a NUL/);
    expect(() => encodeOack([])).toThrow(/at least one option/);
  });
});

describe('decoding requests', () => {
  it('lower-cases option names and the mode, keeps values as sent, and keeps the first of a repeated option', () => {
    const packet = decoded(bytes([0, 1], 'Kernel\0OCTET\0BLKSIZE\x001468\0TSize\x000\0blksize\x00512\0'));
    expect(packet).toEqual({
      type: 'rrq',
      filename: 'Kernel',
      mode: 'octet',
      options: [
        { name: 'blksize', value: '1468' },
        { name: 'tsize', value: '0' },
      ],
    });
  });

  it('accepts UTF-8 filenames', () => {
    expect(decoded(bytes([0, 1], Buffer.from('café.efi\0octet\0', 'utf8').toString('latin1')))).toMatchObject({ filename: 'café.efi' });
  });

  const malformedRequests: [string, Buffer, TftpDecodeFailure, RegExp][] = [
    ['no filename terminator', bytes([0, 1], 'kernel'), 'unterminated-string', /malformed/],
    ['no mode', bytes([0, 1], 'kernel\0'), 'too-short', /lacks a filename or mode/],
    ['an empty filename', bytes([0, 1], '\0octet\0'), 'empty-filename', /names no file/],
    ['an unknown mode', bytes([0, 1], 'kernel\0binary\0'), 'unknown-mode', /unknown transfer mode "binary"/],
    ['an option without a value', bytes([0, 1], 'kernel\0octet\0blksize\0'), 'option-without-value', /option blksize has no value/],
    ['an option without a terminator', bytes([0, 1], 'kernel\0octet\0blksize\x001468'), 'unterminated-string', /malformed/],
    ['an empty option name', bytes([0, 1], 'kernel\0octet\0\x001468\0'), 'empty-option-name', /empty name/],
    ['invalid UTF-8', bytes([0, 1], 'k\xff\xfe\0octet\0'), 'invalid-utf8', /malformed/],
  ];
  for (const [what, buffer, failure, message] of malformedRequests) {
    it(`rejects a request with ${what}`, () => {
      const result = rejected(buffer);
      expect(result.failure).toBe(failure);
      expect(result.message).toMatch(message);
      // The opcode is kept, so the server can still answer a broken request with an ERROR.
      expect(result.opcode).toBe(1);
    });
  }
});

describe('decoding the other packets', () => {
  it('reads DATA up to the largest block and no further', () => {
    expect(decoded(bytes([0, 3, 0, 7]))).toEqual({ type: 'data', block: 7, payload: Buffer.alloc(0) });
    expect(decoded(Buffer.concat([bytes([0, 3, 0, 1]), Buffer.alloc(MAX_BLOCK_SIZE)]))).toMatchObject({ type: 'data', block: 1 });
    const tooLong = rejected(Buffer.concat([bytes([0, 3, 0, 1]), Buffer.alloc(MAX_BLOCK_SIZE + 1)]));
    expect(tooLong).toMatchObject({ failure: 'payload-too-long', message: 'DATA carries 65465 bytes' });
    expect(rejected(bytes([0, 3, 0]))).toMatchObject({ failure: 'too-short', message: 'DATA lacks a block number' });
  });

  it('requires an ACK to be exactly four bytes', () => {
    expect(decoded(bytes([0, 4, 0xff, 0xfe]))).toEqual({ type: 'ack', block: 65534 });
    expect(rejected(bytes([0, 4, 0]))).toMatchObject({ failure: 'bad-length', message: 'ACK is 3 bytes, not 4' });
    expect(rejected(bytes([0, 4, 0, 1, 0]))).toMatchObject({ failure: 'bad-length', message: 'ACK is 5 bytes, not 4' });
  });

  it('takes an ERROR whose message lacks its NUL, or is not UTF-8', () => {
    expect(decoded(bytes([0, 5, 0, 8], 'User aborted'))).toEqual({ type: 'error', code: 8, message: 'User aborted' });
    expect(decoded(bytes([0, 5, 0, 0], 'caf\xe9\0'))).toEqual({ type: 'error', code: 0, message: 'café' });
    expect(rejected(bytes([0, 5, 0]))).toMatchObject({ failure: 'too-short', message: 'ERROR lacks a code' });
  });

  it('reads an OACK and rejects a broken one', () => {
    expect(decoded(bytes([0, 6], 'tsize\x00123\0blksize\x001468\0'))).toEqual({
      type: 'oack',
      options: [
        { name: 'tsize', value: '123' },
        { name: 'blksize', value: '1468' },
      ],
    });
    expect(rejected(bytes([0, 6], 'tsize\0'))).toMatchObject({ failure: 'option-without-value', opcode: 6 });
  });

  it('rejects datagrams too short for an opcode, and unknown opcodes', () => {
    expect(rejected(Buffer.alloc(0))).toMatchObject({ failure: 'too-short', message: '0-byte datagram has no opcode' });
    expect(rejected(bytes([0]))).toMatchObject({ failure: 'too-short', message: '1-byte datagram has no opcode' });
    expect(rejected(bytes([0, 0, 1, 2]))).toMatchObject({ failure: 'unknown-opcode', message: 'unknown opcode 0' });
    expect(rejected(bytes([0, 7]))).toMatchObject({ failure: 'unknown-opcode', message: 'unknown opcode 7' });
    expect(rejected(bytes([0xff, 0xff]))).toMatchObject({ failure: 'unknown-opcode', message: 'unknown opcode 65535' });
  });

  it('never throws on arbitrary bytes (seeded fuzz)', () => {
    let seed = 0x5eed;
    const random = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed >>> 16;
    };
    const outcomes = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const length = random() % 40;
      const buffer = Buffer.alloc(length);
      for (let j = 0; j < length; j++) buffer[j] = random() % 4 === 0 ? 0 : random() & 0xff;
      // A valid opcode half the time, so the per-opcode parsers get exercised too.
      if (length >= 2 && random() % 2 === 0) buffer.writeUInt16BE(1 + (random() % 6), 0);
      const result = decodePacket(buffer);
      outcomes.add(result.ok ? result.packet.type : result.failure);
      if (!result.ok) expect(result.message.length).toBeGreaterThan(0);
    }
    // The fuzz reached both accepted packets and several kinds of rejection.
    expect([...outcomes].sort()).toEqual(expect.arrayContaining(['ack', 'bad-length', 'data', 'error', 'too-short', 'unknown-opcode', 'unterminated-string']));
  });
});

describe('block numbers across the 16-bit rollover', () => {
  it('wraps the wire number to 0 after 65535', () => {
    expect([65534, 65535, 65536, 65537, 131072].map(wireBlock)).toEqual([65534, 65535, 0, 1, 0]);
  });

  it('maps an ACK back to the absolute block it acknowledges, across the wrap', () => {
    // Sent up to absolute 65538 (wire 2); acknowledged so far 65534.
    expect(absoluteAckedBlock(65535, 65534, 65538)).toBe(65535);
    expect(absoluteAckedBlock(0, 65534, 65538)).toBe(65536);
    expect(absoluteAckedBlock(2, 65534, 65538)).toBe(65538);
    expect(absoluteAckedBlock(65534, 65534, 65538)).toBe(65534); // a duplicate
    expect(absoluteAckedBlock(3, 65534, 65538)).toBeUndefined(); // not sent yet
  });

  it('counts blocks with a final short (possibly empty) one', () => {
    expect(blockCount(0, 512)).toBe(1);
    expect(blockCount(511, 512)).toBe(1);
    expect(blockCount(512, 512)).toBe(2);
    expect(blockCount(8 << 20, 1468)).toBe(5715);
  });
});
