// IPMI replies as a BMC, a broken BMC or an attacker on the management network could send them:
// well-formed replies of every kind the client reads (ASF pong, IPMI 1.5 and RMCP+ framing, Open
// Session Response, RAKP 2 and 4, sealed session replies with their integrity trailer, and the
// data of each command), then mutated at one layer: the whole datagram, or the payload inside
// intact framing (re-checksummed or re-sealed), so the mutations reach the inner decoders.
import { randomBytes } from 'node:crypto';
import { IpmiClient } from '../../../modules/ipmi/client.js';
import {
  CIPHER_SUITES,
  PayloadType,
  decodeAsfPresencePong,
  decodeIpmiResponse,
  decodeOpenSessionResponse,
  decodePacket,
  decodeRakp2,
  decodeRakp4,
  deriveSessionKeys,
  encodeSecureV20Packet,
  encodeSessionlessV15Packet,
  encodeV20Packet,
  ipmiChecksum,
  openSecurePayload,
  rakp2KeyExchangeCode,
  rakp3KeyExchangeCode,
  rakp4IntegrityCheckValue,
  sessionIntegrityKey,
  type CipherSuite,
  type RakpContext,
  type SessionKeys,
} from '../../../modules/ipmi/codec.js';
import {
  closeSession,
  getBootFlags,
  getChannelAuthCapabilities,
  getChassisStatus,
  getDeviceId,
  setSessionPrivilegeLevel,
  type Command,
} from '../../../modules/ipmi/commands.js';
import { IpmiError, IpmiMalformedReplyError, IpmiTimeoutError } from '../../../modules/ipmi/errors.js';
import { IpmiTransport, type Endpoint, type Exchange, type RetryPolicy } from '../../../modules/ipmi/transport.js';
import { classify, classifyAsync, type FuzzTarget, type Gen } from '../kit.js';

const COMMANDS: { command: Command<unknown>; samples: Buffer[] }[] = [
  { command: getChannelAuthCapabilities('administrator'), samples: [Buffer.from('0197040300000000', 'hex')] },
  { command: getDeviceId(), samples: [Buffer.from('200181020251eb1f00ba0a', 'hex'), Buffer.from('200181020251eb1f00ba0a00000000', 'hex')] },
  { command: getChassisStatus(), samples: [Buffer.from('010000', 'hex'), Buffer.from('21100040', 'hex')] },
  { command: getBootFlags(), samples: [Buffer.from('0105e00400000000', 'hex').subarray(0, 7), Buffer.from('0105a00800000000', 'hex').subarray(0, 7)] },
  { command: setSessionPrivilegeLevel('administrator'), samples: [Buffer.from([0x04])] },
  { command: closeSession(0x1234), samples: [Buffer.alloc(0)] },
];

/** An IPMI response message to `command` with correct addresses and checksums. */
function responseMessage(g: Gen, command: Command<unknown>, data: Buffer): Buffer {
  const header = Buffer.from([0x81, (command.netFn + 1) << 2]);
  const body = Buffer.concat([Buffer.from([0x20, g.int(64) << 2, command.command, g.chance(0.9) ? 0 : g.int(256)]), data]);
  return Buffer.concat([header, Buffer.from([ipmiChecksum(header)]), body, Buffer.from([ipmiChecksum(body)])]);
}

/** Re-computes both checksums of a (mutated) message, so the mutation gets past them. */
function rechecksum(message: Buffer): Buffer {
  if (message.length < 8) return message;
  const fixed = Buffer.from(message);
  fixed[2] = ipmiChecksum(fixed.subarray(0, 2));
  fixed[fixed.length - 1] = ipmiChecksum(fixed.subarray(3, fixed.length - 1));
  return fixed;
}

function commandData(g: Gen, samples: Buffer[]): Buffer {
  const sample = g.pick(samples);
  return g.chance(0.2) ? g.bytes(g.int(24)) : g.chance(0.5) ? g.mutateBytes(sample) : sample;
}

function asfPong(g: Gen): Buffer {
  const pong = Buffer.alloc(28);
  pong.set([0x06, 0x00, 0xff, 0x06]);
  pong.writeUInt32BE(4542, 4);
  pong[8] = 0x40;
  pong[9] = g.int(256);
  pong[11] = 16;
  pong.writeUInt32BE(4542, 12);
  pong[20] = g.bool() ? 0x81 : 0x01;
  return pong;
}

function openSessionResponse(g: Gen, suite: CipherSuite): Buffer {
  if (g.chance(0.2)) return Buffer.from([g.int(256), 1 + g.int(0x12)]);
  const payload = Buffer.alloc(36);
  payload[0] = g.int(256);
  payload[2] = 4;
  payload.writeUInt32LE(g.int(0xffffffff), 4);
  payload.writeUInt32LE(1 + g.int(0xfffffffe), 8);
  [suite.authentication.id, suite.integrity.id, suite.confidentiality.id].forEach((algorithm, type) => {
    payload[12 + type * 8] = type;
    payload[15 + type * 8] = 8;
    payload[16 + type * 8] = algorithm;
  });
  return payload;
}

function rakp2(g: Gen, suite: CipherSuite): Buffer {
  if (g.chance(0.2)) return Buffer.from([g.int(256), 1 + g.int(0x12)]);
  const header = Buffer.alloc(8);
  header[0] = g.int(256);
  header.writeUInt32LE(g.int(0xffffffff), 4);
  return Buffer.concat([header, g.bytes(32), g.bytes(suite.authentication.keyLength)]);
}

function rakp4(g: Gen, suite: CipherSuite): Buffer {
  if (g.chance(0.2)) return Buffer.from([g.int(256), 1 + g.int(0x12)]);
  const header = Buffer.alloc(8);
  header[0] = g.int(256);
  header.writeUInt32LE(g.int(0xffffffff), 4);
  return Buffer.concat([header, g.bytes(suite.authentication.rakp4Length)]);
}

/** What the client does with a datagram of each kind, the decoders in the order it calls them. */
function decodeAll(datagram: Buffer, kind: string, suite: CipherSuite, command: Command<unknown>, keys: ReturnType<typeof deriveSessionKeys>): void {
  if (kind === 'asf') {
    decodeAsfPresencePong(datagram);
    return;
  }
  const packet = decodePacket(datagram);
  if (kind === 'sessionless') {
    const response = decodeIpmiResponse(packet.payload);
    if (response.completionCode === 0) command.decode(response.data);
    return;
  }
  if (packet.format !== 'rmcp+') return;
  switch (kind) {
    case 'open-session':
      decodeOpenSessionResponse(packet.payload);
      return;
    case 'rakp2':
      decodeRakp2(packet.payload, suite);
      return;
    case 'rakp4':
      decodeRakp4(packet.payload, suite);
      return;
    case 'session': {
      const response = decodeIpmiResponse(openSecurePayload(packet, keys));
      if (response.completionCode === 0) command.decode(response.data);
      return;
    }
  }
}

const KINDS = ['asf', 'sessionless', 'open-session', 'rakp2', 'rakp4', 'session'] as const;

export const ipmiFuzzTarget: FuzzTarget = {
  name: 'ipmi replies',
  async open() {
    // Fixed keys per suite: deriving per input would only measure HMAC.
    const keysOf = { 3: deriveSessionKeys(CIPHER_SUITES[3], randomBytes(20)), 17: deriveSessionKeys(CIPHER_SUITES[17], randomBytes(32)) };
    return {
      one(g) {
        const suite = CIPHER_SUITES[g.bool() ? 3 : 17];
        const keys = keysOf[suite.id];
        const kind = g.pick(KINDS);
        const { command, samples } = g.pick(COMMANDS);
        let datagram: Buffer;
        // 'outer' mutates the datagram; 'inner' mutates the payload inside intact framing.
        const layer = g.pick(['none', 'outer', 'inner', 'inner'] as const);
        const inner = (payload: Buffer) => (layer === 'inner' ? g.mutateBytes(payload) : payload);
        const v20 = (payloadType: number, payload: Buffer) => encodeV20Packet({ payloadType, sessionId: 0, sequence: 0, payload: inner(payload) });
        switch (kind) {
          case 'asf':
            datagram = inner(asfPong(g));
            break;
          case 'sessionless': {
            let message = responseMessage(g, command, commandData(g, samples));
            if (layer === 'inner') message = g.chance(0.7) ? rechecksum(g.mutateBytes(message)) : g.mutateBytes(message);
            datagram = encodeSessionlessV15Packet(message.subarray(0, 255));
            break;
          }
          case 'open-session':
            datagram = v20(PayloadType.openSessionResponse, openSessionResponse(g, suite));
            break;
          case 'rakp2':
            datagram = v20(PayloadType.rakp2, rakp2(g, suite));
            break;
          case 'rakp4':
            datagram = v20(PayloadType.rakp4, rakp4(g, suite));
            break;
          case 'session': {
            let message = responseMessage(g, command, commandData(g, samples));
            if (layer === 'inner') message = g.chance(0.7) ? rechecksum(g.mutateBytes(message)) : g.mutateBytes(message);
            datagram = encodeSecureV20Packet({ payloadType: PayloadType.ipmi, sessionId: g.int(0xffffffff), sequence: g.int(0xffffffff), payload: message }, keys, g.bytes(16));
            break;
          }
        }
        if (layer === 'outer') datagram = g.mutateBytes(datagram);
        return classify(() => decodeAll(datagram, kind, suite, command, keys), (error) => error instanceof IpmiMalformedReplyError);
      },
      async close() {},
    };
  },
};

// ---------------------------------------------------------------------------------------
// The client's own judging of replies (client.ts): a whole session set-up and command against
// an in-memory BMC whose replies are sometimes mutated. The judges are called directly, so a
// judge that throws anything but IpmiMalformedReplyError is a crash here (the real transport
// would hide it as a malformed reply). The client's nonces and IVs are random, so an input
// reproduces its mutations, not its exact bytes.

/** A BMC that answers the client correctly (suite 3 or 17), as client.test.ts's FakeBmc does, without a socket. */
class InMemoryBmc {
  private suite: CipherSuite = CIPHER_SUITES[3];
  private context: RakpContext | undefined;
  private keys: SessionKeys | undefined;
  private sequence = 1;
  private consoleSessionId = 0;
  private readonly guid = Buffer.alloc(16, 7);

  constructor(private readonly chassisData: Buffer) {}

  answer(datagram: Buffer): Buffer | undefined {
    const packet = decodePacket(datagram);
    if (packet.format === 'ipmi-1.5') return encodeSessionlessV15Packet(bmcResponse(packet.payload, Buffer.from('0197040300000000', 'hex')));
    const p = packet.payload;
    switch (packet.payloadType) {
      case PayloadType.openSessionRequest: {
        this.consoleSessionId = p.readUInt32LE(4);
        this.suite = p[12] === 0x03 ? CIPHER_SUITES[17] : CIPHER_SUITES[3];
        const response = Buffer.alloc(36);
        response[0] = p[0]!;
        response[2] = p[1]!;
        p.copy(response, 4, 4, 8);
        response.writeUInt32LE(0x1234, 8);
        p.copy(response, 12, 8, 32);
        return encodeV20Packet({ payloadType: PayloadType.openSessionResponse, sessionId: 0, sequence: 0, payload: response });
      }
      case PayloadType.rakp1: {
        this.context = {
          suite: this.suite,
          consoleSessionId: this.consoleSessionId,
          bmcSessionId: p.readUInt32LE(4),
          consoleRandom: Buffer.from(p.subarray(8, 24)),
          bmcRandom: Buffer.alloc(16, 3),
          bmcGuid: this.guid,
          role: p[24]!,
          username: Buffer.from(p.subarray(28, 28 + p[27]!)),
          password: Buffer.from('secret'),
          bmcKey: undefined,
        };
        const header = Buffer.alloc(8);
        header[0] = p[0]!;
        header.writeUInt32LE(this.consoleSessionId, 4);
        const payload = Buffer.concat([header, this.context.bmcRandom, this.guid, rakp2KeyExchangeCode(this.context)]);
        return encodeV20Packet({ payloadType: PayloadType.rakp2, sessionId: 0, sequence: 0, payload });
      }
      case PayloadType.rakp3: {
        const context = this.context;
        if (!context || p[1] !== 0 || !rakp3KeyExchangeCode(context).equals(p.subarray(8))) return undefined;
        const sik = sessionIntegrityKey(context);
        this.keys = deriveSessionKeys(this.suite, sik);
        const header = Buffer.alloc(8);
        header[0] = p[0]!;
        header.writeUInt32LE(context.consoleSessionId, 4);
        return encodeV20Packet({ payloadType: PayloadType.rakp4, sessionId: 0, sequence: 0, payload: Buffer.concat([header, rakp4IntegrityCheckValue(context, sik)]) });
      }
      case PayloadType.ipmi: {
        if (!this.keys) return undefined;
        const request = openSecurePayload(packet, this.keys);
        const isChassisStatus = request[1]! >> 2 === 0x00 && request[5] === 0x01;
        const data = isChassisStatus ? this.chassisData : request[5] === 0x3b ? request.subarray(6, 7) : Buffer.alloc(0);
        return encodeSecureV20Packet({ payloadType: PayloadType.ipmi, sessionId: this.consoleSessionId, sequence: this.sequence++, payload: bmcResponse(request, data) }, this.keys, Buffer.alloc(16, 1));
      }
      default:
        return undefined;
    }
  }

  get sessionKeys(): SessionKeys | undefined {
    return this.keys;
  }
}

function bmcResponse(request: Buffer, data: Buffer): Buffer {
  const header = Buffer.from([0x81, ((request[1]! >> 2) + 1) << 2]);
  const body = Buffer.concat([Buffer.from([0x20, request[4]!, request[5]!, 0]), data]);
  return Buffer.concat([header, Buffer.from([ipmiChecksum(header)]), body, Buffer.from([ipmiChecksum(body)])]);
}

/** An IpmiTransport stand-in that hands each request to the BMC and the (maybe mutated) reply to the judge. */
function inMemoryTransport(g: Gen, bmc: InMemoryBmc): IpmiTransport {
  const transport = Object.create(IpmiTransport.prototype) as IpmiTransport;
  const fake = {
    send: () => undefined,
    close: async () => undefined,
    exchange<T>(_endpoint: Endpoint, exchange: Exchange<T>, policy: RetryPolicy): Promise<T> {
      for (let attempt = 0; attempt <= policy.retries; attempt++) {
        let reply = bmc.answer(exchange.packet(attempt));
        if (!reply) continue;
        if (g.chance(0.25)) reply = g.mutateBytes(reply);
        let verdict;
        try {
          verdict = exchange.judge(reply);
        } catch (error) {
          if (error instanceof IpmiMalformedReplyError) continue;
          return Promise.reject(new Error(`the client's judge of ${exchange.what} threw ${String(error)} on ${reply.toString('hex')}`));
        }
        if (verdict.kind === 'reply') return Promise.resolve(verdict.value);
        if (verdict.kind === 'fail') return Promise.reject(verdict.error);
      }
      return Promise.reject(new IpmiTimeoutError(exchange.what, policy.retries + 1, 0));
    },
  };
  return Object.assign(transport, fake);
}

export const ipmiSessionFuzzTarget: FuzzTarget = {
  name: 'ipmi sessions',
  async open() {
    return {
      async one(g) {
        const bmc = new InMemoryBmc(g.chance(0.7) ? Buffer.from([g.int(256), 0, 0]) : g.bytes(g.int(6)));
        const client = new IpmiClient({ host: '127.0.0.1', username: 'admin', password: 'secret', retries: 3, cipherSuite: g.pick([3, 17, 'auto'] as const), transport: inMemoryTransport(g, bmc) });
        return classifyAsync(
          async () => {
            await client.getChassisStatus();
            await client.close();
          },
          (error) => error instanceof IpmiError,
        );
      },
      async close() {},
    };
  },
};
