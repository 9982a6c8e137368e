// Codec unit tests. The expected bytes and HMACs were computed independently of this code,
// with Python's hmac/hashlib and the `cryptography` package, straight from the IPMI v2.0
// field lists (RAKP 2/3, SIK, K1/K2, RAKP 4, a whole secure packet) — so a wrong field
// order, length or key here fails, not just a change.
import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CIPHER_SUITES,
  PayloadType,
  decodeAsfPresencePong,
  decodeIpmiResponse,
  decodeOpenSessionResponse,
  decodePacket,
  decodeRakp2,
  decodeRakp4,
  decryptAesCbc128,
  deriveSessionKeys,
  encodeAsfPresencePing,
  encodeIpmiRequest,
  encodeOpenSessionRequest,
  encodeRakp1,
  encodeRakp3,
  encodeSecureV20Packet,
  encodeSessionlessV15Packet,
  encodeV20Packet,
  encryptAesCbc128,
  ipmiChecksum,
  openSecurePayload,
  rakp2KeyExchangeCode,
  rakp3KeyExchangeCode,
  rakp4IntegrityCheckValue,
  sessionIntegrityKey,
  type RakpContext,
} from './codec.js';
import { IpmiMalformedReplyError } from './errors.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** A copy of `bytes` with one bit of one byte flipped. */
function flipped(bytes: Buffer, offset: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] = copy[offset]! ^ 0x01;
  return copy;
}

function context(suite: 3 | 17): RakpContext {
  return {
    suite: CIPHER_SUITES[suite],
    consoleSessionId: 0xa0a1a2a3,
    bmcSessionId: 0x02000004,
    consoleRandom: hex('000102030405060708090a0b0c0d0e0f'),
    bmcRandom: hex('101112131415161718191a1b1c1d1e1f'),
    bmcGuid: hex('a123456789abcdefa123456789abcdef'),
    role: 0x14,
    username: Buffer.from('admin'),
    password: Buffer.from('secret'),
    bmcKey: undefined,
  };
}

const VECTORS = {
  3: {
    rakp2: 'fe488c8793b7eadf0f663f0d8b7fef16a889bce4',
    rakp3: 'eb5778f62620ec5e2c050b2d9cd5186c80ff0503',
    sik: 'a39ae2b160a1e5efe017ffd6ec1a4ff8eeac6f54',
    k1: '58dbc1afa00eb3f9487c9eaef0dc7892cc43e496',
    k2: '8bd9b8ce0674b5d745ced91e728ac1a51464fcaf',
    rakp4: '73745f32b93102987edd4c89',
    packet:
      '0600ff0706c004000002010000002000f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff7b4f8b1e7bec6fc976ece84d9c4ea8ecffff02072cb6d4c7f5ea8cc7dd7c1122',
  },
  17: {
    rakp2: '321a64b2dea0261d7c9abddc905b6d2eebd3af1dfeb723194491689de314007a',
    rakp3: '35e3ebdabf40374b6c78fef8d3a13830e2b86bafbd4d316682af7bc201b8d589',
    sik: '0c4b7464110cf18fd94ec46aa0242c66ab06157709c02ea7db1653aac04b1023',
    k1: '6156285b8edfe6df8bb994483a8a76c26b587a3fc6c0b5ec6b2d7ad1fb4f5d35',
    k2: 'af7f7d6eea3e7abc029e14501226c23db32ca4c78ac2f2c384a28680b6648503',
    rakp4: 'f46c4e401600f26454c09488ded44fb3',
    packet:
      '0600ff0706c004000002010000002000f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff57e9c6a00a859ff01c399103ac4cf839ffff0207877405a821dda4f18fc20e3c6ae73f94',
  },
} as const;

/** Get Chassis Status, rqSeq 1. */
const CHASSIS_STATUS_REQUEST = hex('2000e08104017a');
const FIXED_IV = hex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');

describe('IPMI message', () => {
  it('checksums to zero with the covered bytes', () => {
    expect(ipmiChecksum(Buffer.from([0x20, 0x18]))).toBe(0xc8);
    const bytes = Buffer.from([0x81, 0x04, 0x38, 0x8e, 0x04]);
    const sum = [...bytes, ipmiChecksum(bytes)].reduce((a, b) => a + b, 0);
    expect(sum & 0xff).toBe(0);
  });

  it('encodes requests with both checksums', () => {
    expect(encodeIpmiRequest({ netFn: 0x00, command: 0x01, rqSeq: 1, data: Buffer.alloc(0) })).toEqual(CHASSIS_STATUS_REQUEST);
    expect(encodeIpmiRequest({ netFn: 0x06, command: 0x38, rqSeq: 1, data: Buffer.from([0x8e, 0x04]) }).toString('hex')).toBe(
      '2018c88104388e04b1',
    );
  });

  it('decodes a response and rejects bad checksums, addresses and short replies', () => {
    // Get Chassis Status response: power on, rqSeq 1.
    const good = hex('81047b 200401 00 010000 da');
    const response = decodeIpmiResponse(good);
    expect(response).toMatchObject({ netFn: 0x01, command: 0x01, rqSeq: 1, completionCode: 0 });
    expect(response.data).toEqual(hex('010000'));

    expect(() => decodeIpmiResponse(flipped(good, 2))).toThrow(/header checksum/);
    expect(() => decodeIpmiResponse(flipped(good, 8))).toThrow(/data checksum/);
    expect(() => decodeIpmiResponse(good.subarray(0, 7))).toThrow(IpmiMalformedReplyError);
    const notForUs = hex('82047a20040100010000da');
    expect(() => decodeIpmiResponse(notForUs)).toThrow(/not to us/);
  });
});

describe('packet framing', () => {
  it('frames a sessionless IPMI 1.5 request', () => {
    const packet = encodeSessionlessV15Packet(CHASSIS_STATUS_REQUEST);
    expect(packet.toString('hex')).toBe('0600ff07' + '00' + '00000000' + '00000000' + '07' + '2000e08104017a');
  });

  it('decodes IPMI 1.5 and RMCP+ framing', () => {
    const v15 = decodePacket(hex('0600ff07 00 00000000 00000000 03 aabbcc'));
    expect(v15).toMatchObject({ format: 'ipmi-1.5', sessionId: 0, sequence: 0 });
    expect(v15.payload).toEqual(hex('aabbcc'));

    const v20 = decodePacket(encodeV20Packet({ payloadType: PayloadType.rakp2, sessionId: 0, sequence: 0, payload: hex('0102') }));
    expect(v20).toMatchObject({ format: 'rmcp+', payloadType: PayloadType.rakp2, authenticated: false, encrypted: false });
    expect(v20.payload).toEqual(hex('0102'));
  });

  it.each([
    ['empty', ''],
    ['garbage text', Buffer.from('hello, this is not IPMI').toString('hex')],
    ['wrong RMCP version', '0700ff0700000000000000000000'],
    ['ASF class, not IPMI', '0600ff0600000000000000000000'],
    ['truncated RMCP+ header', '0600ff0706100000'],
    ['payload longer than the datagram', '0600ff0706110000000000000000ff00aa'],
    ['unauthenticated RMCP+ with trailing bytes', '0600ff0706110000000000000000010000aa'],
    ['IPMI 1.5 length past the end', '0600ff0700000000000000000000050102'],
    ['IPMI 1.5 with auth type but no auth code', '0600ff070200000000000000000000'],
  ])('rejects %s with a typed error', (_name, bytes) => {
    expect(() => decodePacket(hex(bytes))).toThrow(IpmiMalformedReplyError);
  });
});

describe('RMCP/ASF presence ping', () => {
  // The pong ipmi_sim sends: ASF IANA, no OEM data, "supports IPMI" (0x81), no interactions.
  const pong = hex('0600ff06 000011be 40 05 00 10 000011be 00000000 81 00 000000000000');

  it('encodes a ping with ASF IANA number, type 0x80 and the tag', () => {
    expect(encodeAsfPresencePing(5).toString('hex')).toBe('0600ff06' + '000011be' + '80' + '05' + '00' + '00');
  });

  it('decodes a pong and rejects anything else', () => {
    expect(decodeAsfPresencePong(pong)).toEqual({ tag: 5, ipmi: true });
    expect(() => decodeAsfPresencePong(pong.subarray(0, 27))).toThrow(IpmiMalformedReplyError);
    expect(() => decodeAsfPresencePong(flipped(pong, 7))).toThrow(/IANA/);
    expect(() => decodeAsfPresencePong(flipped(pong, 8))).toThrow(/message type/);
    expect(() => decodeAsfPresencePong(flipped(pong, 3))).toThrow(/class/);
  });
});

describe.each([3, 17] as const)('cipher suite %i', (suiteId) => {
  const vectors = VECTORS[suiteId];
  const suite = CIPHER_SUITES[suiteId];

  it('computes the RAKP 2 and RAKP 3 key exchange codes', () => {
    expect(rakp2KeyExchangeCode(context(suiteId)).toString('hex')).toBe(vectors.rakp2);
    expect(rakp3KeyExchangeCode(context(suiteId)).toString('hex')).toBe(vectors.rakp3);
  });

  it('derives SIK, K1, the AES key from K2, and the RAKP 4 check value', () => {
    const sik = sessionIntegrityKey(context(suiteId));
    expect(sik.toString('hex')).toBe(vectors.sik);
    const keys = deriveSessionKeys(suite, sik);
    expect(keys.k1.toString('hex')).toBe(vectors.k1);
    expect(keys.aesKey.toString('hex')).toBe(vectors.k2.slice(0, 32));
    expect(rakp4IntegrityCheckValue(context(suiteId), sik).toString('hex')).toBe(vectors.rakp4);
  });

  it('uses the BMC key Kg, when set, for the SIK only', () => {
    const withKg = { ...context(suiteId), bmcKey: Buffer.from('bmc-key') };
    expect(sessionIntegrityKey(withKg).toString('hex')).not.toBe(vectors.sik);
    expect(rakp2KeyExchangeCode(withKg).toString('hex')).toBe(vectors.rakp2);
  });

  it('builds an encrypted, authenticated packet byte for byte', () => {
    const keys = deriveSessionKeys(suite, hex(vectors.sik));
    const packet = encodeSecureV20Packet(
      { payloadType: PayloadType.ipmi, sessionId: 0x02000004, sequence: 1, payload: CHASSIS_STATUS_REQUEST },
      keys,
      FIXED_IV,
    );
    expect(packet.toString('hex')).toBe(vectors.packet);
  });

  it('opens its own packets and refuses tampered or truncated ones', () => {
    const keys = deriveSessionKeys(suite, hex(vectors.sik));
    const packet = hex(vectors.packet);
    const decoded = decodePacket(packet);
    if (decoded.format !== 'rmcp+') throw new Error('expected RMCP+');
    expect(decoded).toMatchObject({ authenticated: true, encrypted: true, sessionId: 0x02000004, sequence: 1 });
    expect(openSecurePayload(decoded, keys)).toEqual(CHASSIS_STATUS_REQUEST);

    for (const offset of [20, packet.length - 1]) {
      const framed = decodePacket(flipped(packet, offset));
      if (framed.format !== 'rmcp+') throw new Error('expected RMCP+');
      expect(() => openSecurePayload(framed, keys)).toThrow(/integrity code mismatch/);
    }
    const truncated = decodePacket(packet.subarray(0, packet.length - suite.integrity.codeLength));
    if (truncated.format !== 'rmcp+') throw new Error('expected RMCP+');
    expect(() => openSecurePayload(truncated, keys)).toThrow(IpmiMalformedReplyError);
    const otherKeys = deriveSessionKeys(suite, Buffer.alloc(suite.authentication.keyLength, 7));
    expect(() => openSecurePayload(decoded, otherKeys)).toThrow(/integrity code mismatch/);
  });

  it('decodes RAKP 2 and RAKP 4 with this suite’s lengths and nothing else', () => {
    const codeLength = suite.authentication.keyLength;
    const rakp2 = Buffer.concat([
      hex('07 00 0000 a3a2a1a0'),
      context(suiteId).bmcRandom,
      context(suiteId).bmcGuid,
      Buffer.alloc(codeLength, 0xab),
    ]);
    expect(decodeRakp2(rakp2, suite)).toMatchObject({ tag: 7, status: 0, consoleSessionId: 0xa0a1a2a3 });
    expect(() => decodeRakp2(rakp2.subarray(0, rakp2.length - 1), suite)).toThrow(IpmiMalformedReplyError);
    expect(() => decodeRakp2(Buffer.concat([rakp2, hex('00')]), suite)).toThrow(/trailing/);

    const rakp4 = Buffer.concat([hex('08 00 0000 a3a2a1a0'), Buffer.alloc(suite.authentication.rakp4Length, 0xcd)]);
    expect(decodeRakp4(rakp4, suite)).toMatchObject({ tag: 8, status: 0, consoleSessionId: 0xa0a1a2a3 });
    expect(() => decodeRakp4(rakp4.subarray(0, rakp4.length - 1), suite)).toThrow(IpmiMalformedReplyError);
  });

  it('proposes exactly this suite’s algorithms in Open Session', () => {
    const payload = encodeOpenSessionRequest({ tag: 1, privilege: 4, consoleSessionId: 0xa0a1a2a3, suite });
    const a = suite.authentication.id.toString(16).padStart(2, '0');
    const i = suite.integrity.id.toString(16).padStart(2, '0');
    expect(payload.toString('hex')).toBe(
      `01040000a3a2a1a0` + `00000008${a}000000` + `01000008${i}000000` + `0200000801000000`,
    );
  });
});

describe('session set-up payloads', () => {
  const accepted = hex('01 00 04 00 a3a2a1a0 04000002 0000000801000000 0100000801000000 0200000801000000');

  it('decodes an accepted Open Session Response', () => {
    expect(decodeOpenSessionResponse(accepted)).toEqual({
      tag: 1,
      status: 0,
      privilege: 4,
      consoleSessionId: 0xa0a1a2a3,
      bmcSessionId: 0x02000004,
      algorithms: [1, 1, 1],
    });
  });

  it('decodes a refusal that stops after the status byte', () => {
    expect(decodeOpenSessionResponse(hex('0104'))).toEqual({ tag: 1, status: 4 });
    expect(decodeRakp2(hex('020d'), CIPHER_SUITES[3])).toEqual({ tag: 2, status: 0x0d });
  });

  it('rejects truncated responses, swapped records and a zero session ID', () => {
    expect(() => decodeOpenSessionResponse(hex('01'))).toThrow(IpmiMalformedReplyError);
    expect(() => decodeOpenSessionResponse(accepted.subarray(0, 35))).toThrow(IpmiMalformedReplyError);
    const swapped = Buffer.from(accepted);
    swapped[12] = 1;
    expect(() => decodeOpenSessionResponse(swapped)).toThrow(/record 0 has type 1/);
    const zeroSession = Buffer.from(accepted);
    zeroSession.fill(0, 8, 12);
    expect(() => decodeOpenSessionResponse(zeroSession)).toThrow(/session ID is 0/);
  });

  it('encodes RAKP 1 and RAKP 3 field by field', () => {
    const rakp1 = encodeRakp1({
      tag: 2,
      bmcSessionId: 0x02000004,
      consoleRandom: context(3).consoleRandom,
      role: 0x14,
      username: Buffer.from('admin'),
    });
    expect(rakp1.toString('hex')).toBe('02000000' + '04000002' + '000102030405060708090a0b0c0d0e0f' + '14' + '0000' + '05' + '61646d696e');
    const rakp3 = encodeRakp3({ tag: 3, status: 0, bmcSessionId: 0x02000004, keyExchangeCode: hex('aabb') });
    expect(rakp3.toString('hex')).toBe('03000000' + '04000002' + 'aabb');
  });
});

describe('AES-CBC-128 confidentiality', () => {
  const key = hex('000102030405060708090a0b0c0d0e0f');

  it('pads with 1, 2, 3... and a pad length to whole blocks, for every length', () => {
    for (let length = 0; length <= 33; length++) {
      const plain = Buffer.alloc(length, 0x5a);
      const sealed = encryptAesCbc128(key, plain, FIXED_IV);
      expect(sealed.length).toBe(16 + Math.ceil((length + 1) / 16) * 16);
      expect(sealed.subarray(0, 16)).toEqual(FIXED_IV);
      expect(decryptAesCbc128(key, sealed)).toEqual(plain);
    }
  });

  it('pads a 7-byte message with 1..8 and pad length 8', () => {
    const sealed = encryptAesCbc128(key, CHASSIS_STATUS_REQUEST, FIXED_IV);
    const raw = createCipheriv('aes-128-cbc', key, FIXED_IV).setAutoPadding(false);
    const expected = Buffer.concat([CHASSIS_STATUS_REQUEST, hex('0102030405060708'), hex('08')]);
    expect(sealed.subarray(16)).toEqual(Buffer.concat([raw.update(expected), raw.final()]));
  });

  function sealRaw(block: Buffer): Buffer {
    const cipher = createCipheriv('aes-128-cbc', key, FIXED_IV).setAutoPadding(false);
    return Buffer.concat([FIXED_IV, cipher.update(block), cipher.final()]);
  }

  it('rejects bad pad lengths, bad pad bytes and partial blocks', () => {
    expect(() => decryptAesCbc128(key, sealRaw(Buffer.alloc(16, 0x10)))).toThrow(/pad length 16/);
    const badPad = Buffer.alloc(16, 0);
    badPad[15] = 2; // pad bytes should be 01 02
    expect(() => decryptAesCbc128(key, sealRaw(badPad))).toThrow(/pad bytes/);
    expect(() => decryptAesCbc128(key, FIXED_IV)).toThrow(/whole AES blocks/);
    expect(() => decryptAesCbc128(key, Buffer.alloc(40))).toThrow(/whole AES blocks/);
  });
});
