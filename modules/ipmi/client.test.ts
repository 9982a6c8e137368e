// IpmiClient's session logic against a small in-test BMC on loopback that speaks RMCP+ with
// cipher suites 3 and 17. ipmi_sim only speaks suite 3, so this is where the suite 17 session,
// the fallback to 3, the privilege raise and the failure paths that need a misbehaving BMC
// are exercised. The fake BMC uses the codec's crypto from the BMC side: a round trip of our
// own packet code (the codec's vectors are checked independently in codec.test.ts).
import { randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { IpmiClient } from './client.js';
import {
  CIPHER_SUITES,
  PayloadType,
  decodePacket,
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
} from './codec.js';
import { IpmiAuthenticationError, IpmiClosedError, IpmiCompletionCodeError, IpmiMalformedReplyError } from './errors.js';

interface FakeBmcConfig {
  suites: (3 | 17)[];
  password: string;
  chassisStatus: { completionCode: number; data: Buffer };
  /** Corrupt the integrity code of the first Get Chassis Status reply. */
  tamperFirstStatusReply: boolean;
}

function ipmiResponse(request: Buffer, completionCode: number, data: Buffer): Buffer {
  const header = Buffer.from([0x81, ((request[1]! >> 2) + 1) << 2]);
  const body = Buffer.concat([Buffer.from([0x20, request[4]!, request[5]!, completionCode]), data]);
  return Buffer.concat([header, Buffer.from([ipmiChecksum(header)]), body, Buffer.from([ipmiChecksum(body)])]);
}

class FakeBmc {
  readonly config: FakeBmcConfig = {
    suites: [3, 17],
    password: 'secret',
    chassisStatus: { completionCode: 0, data: Buffer.from([0x01, 0x00, 0x00]) },
    tamperFirstStatusReply: false,
  };
  readonly offeredSuites: number[] = [];
  readonly privilegeRequests: number[] = [];
  readonly abandonedWithStatus: number[] = [];
  chassisStatusRequests = 0;
  closeSessionRequests = 0;
  private readonly guid = randomBytes(16);
  private suite: CipherSuite = CIPHER_SUITES[3];
  private context: RakpContext | undefined;
  private keys: SessionKeys | undefined;
  private sequence = 1;
  private consoleSessionId = 0;

  private constructor(readonly socket: Socket) {
    socket.on('message', (datagram: Buffer, remote: RemoteInfo) => {
      const reply = this.handle(datagram);
      if (reply) socket.send(reply, remote.port, remote.address);
    });
  }

  static async start(): Promise<FakeBmc> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new FakeBmc(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  private handle(datagram: Buffer): Buffer | undefined {
    const packet = decodePacket(datagram);
    if (packet.format === 'ipmi-1.5') {
      // Get Channel Authentication Capabilities: channel 1, IPMI v2.0 extended data, RMCP+.
      return encodeSessionlessV15Packet(ipmiResponse(packet.payload, 0, Buffer.from('0197040300000000', 'hex')));
    }
    const p = packet.payload;
    switch (packet.payloadType) {
      case PayloadType.openSessionRequest: {
        this.consoleSessionId = p.readUInt32LE(4);
        const algorithm = p[12];
        const suite = algorithm === 0x03 ? CIPHER_SUITES[17] : CIPHER_SUITES[3];
        this.offeredSuites.push(suite.id);
        if (!this.config.suites.includes(suite.id)) {
          return encodeV20Packet({ payloadType: PayloadType.openSessionResponse, sessionId: 0, sequence: 0, payload: Buffer.from([p[0]!, 0x04]) });
        }
        this.suite = suite;
        const response = Buffer.alloc(36);
        response[0] = p[0]!;
        response[2] = p[1]!;
        p.copy(response, 4, 4, 8); // console session ID
        response.writeUInt32LE(0x1234, 8);
        p.copy(response, 12, 8, 32); // the algorithm records we accept, as offered
        return encodeV20Packet({ payloadType: PayloadType.openSessionResponse, sessionId: 0, sequence: 0, payload: response });
      }
      case PayloadType.rakp1: {
        const username = p.subarray(28, 28 + p[27]!);
        this.context = {
          suite: this.suite,
          consoleSessionId: this.consoleSessionId,
          bmcSessionId: p.readUInt32LE(4),
          consoleRandom: Buffer.from(p.subarray(8, 24)),
          bmcRandom: randomBytes(16),
          bmcGuid: this.guid,
          role: p[24]!,
          username: Buffer.from(username),
          password: Buffer.from(this.config.password),
          bmcKey: undefined,
        };
        const header = Buffer.alloc(8);
        header[0] = p[0]!;
        header.writeUInt32LE(this.consoleSessionId, 4);
        const { bmcRandom, bmcGuid } = this.context;
        return encodeV20Packet({
          payloadType: PayloadType.rakp2,
          sessionId: 0,
          sequence: 0,
          payload: Buffer.concat([header, bmcRandom, bmcGuid, rakp2KeyExchangeCode(this.context)]),
        });
      }
      case PayloadType.rakp3: {
        const context = this.context!;
        if (p[1] !== 0) {
          this.abandonedWithStatus.push(p[1]!);
          return undefined;
        }
        if (!rakp3KeyExchangeCode(context).equals(p.subarray(8))) {
          return encodeV20Packet({ payloadType: PayloadType.rakp4, sessionId: 0, sequence: 0, payload: Buffer.from([p[0]!, 0x0f]) });
        }
        const sik = sessionIntegrityKey(context);
        this.keys = deriveSessionKeys(this.suite, sik);
        this.sequence = 1;
        const header = Buffer.alloc(8);
        header[0] = p[0]!;
        header.writeUInt32LE(context.consoleSessionId, 4);
        return encodeV20Packet({
          payloadType: PayloadType.rakp4,
          sessionId: 0,
          sequence: 0,
          payload: Buffer.concat([header, rakp4IntegrityCheckValue(context, sik)]),
        });
      }
      case PayloadType.ipmi:
        return this.command(packet);
      default:
        return undefined;
    }
  }

  private command(packet: Extract<ReturnType<typeof decodePacket>, { format: 'rmcp+' }>): Buffer | undefined {
    const keys = this.keys!;
    const request = openSecurePayload(packet, keys);
    const netFn = request[1]! >> 2;
    const command = request[5]!;
    const data = request.subarray(6, request.length - 1);
    let response: Buffer;
    let tamper = false;
    if (netFn === 0x06 && command === 0x3b) {
      this.privilegeRequests.push(data[0]!);
      response = ipmiResponse(request, 0, data);
    } else if (netFn === 0x00 && command === 0x01) {
      this.chassisStatusRequests++;
      tamper = this.config.tamperFirstStatusReply && this.chassisStatusRequests === 1;
      response = ipmiResponse(request, this.config.chassisStatus.completionCode, this.config.chassisStatus.data);
    } else {
      if (netFn === 0x06 && command === 0x3c) this.closeSessionRequests++;
      response = ipmiResponse(request, 0, Buffer.alloc(0));
    }
    const reply = encodeSecureV20Packet(
      { payloadType: PayloadType.ipmi, sessionId: this.context!.consoleSessionId, sequence: this.sequence++, payload: response },
      keys,
      randomBytes(16),
    );
    if (tamper) reply[reply.length - 1] = reply[reply.length - 1]! ^ 0xff;
    return reply;
  }

  close(): void {
    this.socket.close();
  }
}

const bmcs: FakeBmc[] = [];
const clients: IpmiClient[] = [];

async function setUp(
  configure: (config: FakeBmcConfig) => void = () => undefined,
  extra: { sessionIdleMs?: number; timeoutMs?: number } = {},
) {
  const bmc = await FakeBmc.start();
  bmcs.push(bmc);
  configure(bmc.config);
  const client = new IpmiClient({ host: '127.0.0.1', port: bmc.port, username: 'admin', password: 'secret', timeoutMs: 5000, retries: 2, ...extra });
  clients.push(client);
  return { bmc, client };
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const bmc of bmcs.splice(0)) bmc.close();
});

describe('IpmiClient sessions (in-test RMCP+ BMC)', () => {
  it('opens a cipher suite 17 session when the BMC offers it and runs commands over it', async () => {
    const { bmc, client } = await setUp();
    await expect(client.getChassisStatus()).resolves.toMatchObject({ power: 'on' });
    expect(client.cipherSuite).toBe(17);
    expect(bmc.offeredSuites).toEqual([17]);
  });

  it('falls back to suite 3 when the BMC rejects 17, and offers only 3 from then on', async () => {
    const { bmc, client } = await setUp((config) => (config.suites = [3]), { sessionIdleMs: 0 });
    await client.getChassisStatus();
    expect(client.cipherSuite).toBe(3);
    await client.getChassisStatus(); // idle limit 0: a second session
    expect(client.sessionsOpened).toBe(2);
    expect(bmc.offeredSuites).toEqual([17, 3, 3]);
  });

  it('raises the session privilege once, and only for commands that need it', async () => {
    const { bmc, client } = await setUp();
    await client.getChassisStatus();
    expect(bmc.privilegeRequests).toEqual([]);
    await client.chassisControl('on');
    await client.setBootDevice({ device: 'pxe', persistent: false, efi: true });
    expect(bmc.privilegeRequests).toEqual([4]);
    expect(client.sessionsOpened).toBe(1);
  });

  it('reports a completion code with its code and keeps the session', async () => {
    const { bmc, client } = await setUp((config) => (config.chassisStatus = { completionCode: 0xc1, data: Buffer.alloc(0) }));
    const error = await client.getChassisStatus().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IpmiCompletionCodeError);
    expect((error as IpmiCompletionCodeError).code).toBe(0xc1);
    bmc.config.chassisStatus = { completionCode: 0, data: Buffer.from([0x00, 0x00, 0x00]) };
    await expect(client.getChassisStatus()).resolves.toMatchObject({ power: 'off' });
    expect(client.sessionsOpened).toBe(1);
  });

  it('fails at once, without retransmitting, on an authentic reply with truncated data', async () => {
    const { bmc, client } = await setUp((config) => (config.chassisStatus = { completionCode: 0, data: Buffer.from([0x01]) }));
    await expect(client.getChassisStatus()).rejects.toBeInstanceOf(IpmiMalformedReplyError);
    expect(bmc.chassisStatusRequests).toBe(1);
  });

  it('ignores a reply with a bad integrity code and takes the retransmission’s', async () => {
    const { bmc, client } = await setUp((config) => (config.tamperFirstStatusReply = true), { timeoutMs: 50 });
    await expect(client.getChassisStatus()).resolves.toMatchObject({ power: 'on' });
    expect(bmc.chassisStatusRequests).toBeGreaterThanOrEqual(2); // 1 if the tampered reply had been taken
  });

  it('on a wrong password fails with an authentication error and tells the BMC it gives up', async () => {
    const { bmc, client } = await setUp((config) => (config.password = 'another'));
    const error = await client.getChassisStatus().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IpmiAuthenticationError);
    expect((error as IpmiAuthenticationError).stage).toBe('rakp2');
    await expect.poll(() => bmc.abandonedWithStatus).toEqual([0x0f]);
  });

  it('finishes commands queued before close(), closes the session, and refuses later commands', async () => {
    const { bmc, client } = await setUp();
    const queued = client.getChassisStatus();
    const closed = client.close();
    await expect(queued).resolves.toMatchObject({ power: 'on' });
    await closed;
    expect(bmc.closeSessionRequests).toBe(1);
    await expect(client.getDeviceId()).rejects.toBeInstanceOf(IpmiClosedError);
  });
});
