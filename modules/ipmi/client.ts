// An IPMI v2.0 RMCP+ ("lanplus") client for one BMC. It opens a session on first use
// (Get Channel Authentication Capabilities, Open Session, RAKP 1-4), reuses it for every
// later command, raises the session privilege only when a command needs it, and closes
// it on close(). Commands on one client run one at a time (IPMI sessions are sequential);
// many clients, one per BMC, share one IpmiTransport to run in parallel.
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';
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
  encodeAsfPresencePing,
  encodeIpmiRequest,
  encodeOpenSessionRequest,
  encodeRakp1,
  encodeRakp3,
  encodeSecureV20Packet,
  encodeSessionlessV15Packet,
  encodeV20Packet,
  openSecurePayload,
  rakp2KeyExchangeCode,
  rakp3KeyExchangeCode,
  rakp4IntegrityCheckValue,
  sessionIntegrityKey,
  type AsfPresencePong,
  type CipherSuite,
  type InboundPacket,
  type RakpContext,
  type SessionKeys,
} from './codec.js';
import {
  Privilege,
  chassisControl,
  closeSession,
  getBootFlags,
  getChannelAuthCapabilities,
  getChassisStatus,
  getDeviceId,
  setBootFlags,
  setSessionPrivilegeLevel,
  type BootDeviceRequest,
  type BootFlags,
  type ChassisControlOp,
  type ChassisStatus,
  type Command,
  type DeviceId,
  type PrivilegeName,
} from './commands.js';
import {
  describeRmcpPlusStatus,
  IpmiAuthenticationError,
  IpmiClosedError,
  IpmiCompletionCodeError,
  IpmiError,
  IpmiMalformedReplyError,
  IpmiSessionError,
} from './errors.js';
import { IpmiTransport, type Endpoint, type RetryPolicy, type Verdict } from './transport.js';

export interface IpmiClientOptions {
  /** IPv4 address of the BMC (a literal: replies are matched on the sender's address). */
  host: string;
  /** UDP port of the BMC; 623 unless told. */
  port?: number;
  username: string;
  password: string;
  /** Wait for the first attempt of each exchange; later attempts wait twice as long each. Default 1000. */
  timeoutMs?: number;
  /** Retransmissions per exchange after the first attempt. Default 2. */
  retries?: number;
  /** 'auto' (default) tries 17 and falls back to 3 when the BMC rejects 17's algorithms. */
  cipherSuite?: 3 | 17 | 'auto';
  /** Highest privilege the session may take; commands raise to it on demand. Default administrator. */
  privilege?: PrivilegeName;
  /** Kg, the BMC key, when the BMC has one set ("two-key" login). */
  bmcKey?: Buffer;
  /** A transport shared with other clients. Without one the client opens its own and closes it in close(). */
  transport?: IpmiTransport;
  /** A session idle longer than this is replaced before use, ahead of the BMC timing it out. Default 20 s. */
  sessionIdleMs?: number;
}

interface ActiveSession {
  consoleSessionId: number;
  bmcSessionId: number;
  keys: SessionKeys;
  nextSequence: number;
  /** Highest session sequence number accepted from the BMC; older ones are replays or late duplicates. */
  lastInboundSequence: number;
  privilege: number;
  lastUsedAt: number;
}

/** RMCP+ statuses that mean "these algorithms, not you": worth retrying with suite 3. */
const SUITE_REJECTED_STATUSES = new Set([0x04, 0x05, 0x06, 0x07, 0x10, 0x11]);
/** RMCP+ statuses that mean the user, password or role was refused. */
const CREDENTIAL_STATUSES = new Set([0x09, 0x0a, 0x0c, 0x0d, 0x0e, 0x0f]);
/** Name-only user lookup in the RAKP 1 role byte: find the user by name, not by name and privilege. */
const NAME_ONLY_LOOKUP = 0x10;

type OpenSessionOutcome = { accepted: true; bmcSessionId: number } | { accepted: false; status: number };
type RmcpPlusPacket = Extract<InboundPacket, { format: 'rmcp+' }>;

function sessionSetupError(stage: 'open-session' | 'rakp2' | 'rakp4', status: number): IpmiError {
  return CREDENTIAL_STATUSES.has(status)
    ? new IpmiAuthenticationError(stage, status, describeRmcpPlusStatus(status))
    : new IpmiSessionError(stage, status);
}

/** Decodes the framing; anything undecodable is a malformed verdict, a foreign packet is not ours. */
function decodeSetupReply(datagram: Buffer, payloadType: number): RmcpPlusPacket | Verdict<never> {
  let packet: InboundPacket;
  try {
    packet = decodePacket(datagram);
  } catch (error) {
    return { kind: 'malformed', error: error as IpmiMalformedReplyError };
  }
  if (packet.format !== 'rmcp+' || packet.payloadType !== payloadType || packet.sessionId !== 0) return { kind: 'not-mine' };
  if (packet.authenticated || packet.encrypted) return { kind: 'not-mine' };
  return packet;
}

export class IpmiClient {
  readonly endpoint: Endpoint;
  private readonly username: Buffer;
  private readonly password: Buffer;
  private readonly policy: RetryPolicy;
  private readonly privilegeName: PrivilegeName;
  private readonly privilege: number;
  private readonly sessionIdleMs: number;
  private readonly bmcKey: Buffer | undefined;
  private transport: Promise<IpmiTransport> | undefined;
  private readonly ownsTransport: boolean;
  /** Suites to offer, best first; narrowed to the one that worked once a session opened. */
  private suites: CipherSuite[];
  private session: ActiveSession | undefined;
  private ipmi20Confirmed = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** Set by close(): commands already queued still run, new ones are refused. */
  private closing: Promise<void> | undefined;
  private rqSeq = 0;
  private messageTag = 0;
  private opened = 0;

  constructor(options: IpmiClientOptions) {
    if (!isIPv4(options.host)) throw new RangeError(`BMC host must be an IPv4 address, got ${options.host}`);
    const port = options.port ?? 623;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`invalid BMC port ${port}`);
    this.endpoint = { host: options.host, port };
    this.username = Buffer.from(options.username, 'utf8');
    this.password = Buffer.from(options.password, 'utf8');
    if (this.username.length > 16) throw new RangeError('IPMI user names are at most 16 bytes');
    if (this.password.length > 20) throw new RangeError('IPMI v2.0 passwords are at most 20 bytes');
    const timeoutMs = options.timeoutMs ?? 1000;
    const retries = options.retries ?? 2;
    if (!(timeoutMs > 0) || !Number.isInteger(retries) || retries < 0 || retries > 10) {
      throw new RangeError('timeoutMs must be positive and retries an integer in 0..10');
    }
    this.policy = { timeoutMs, retries, backoff: 2 };
    this.privilegeName = options.privilege ?? 'administrator';
    this.privilege = Privilege[this.privilegeName];
    this.sessionIdleMs = options.sessionIdleMs ?? 20_000;
    this.bmcKey = options.bmcKey;
    const suite = options.cipherSuite ?? 'auto';
    this.suites = suite === 'auto' ? [CIPHER_SUITES[17], CIPHER_SUITES[3]] : [CIPHER_SUITES[suite]];
    this.ownsTransport = options.transport === undefined;
    if (options.transport) this.transport = Promise.resolve(options.transport);
  }

  /** Sessions this client has opened so far: 1 after any number of commands on a reused session. */
  get sessionsOpened(): number {
    return this.opened;
  }

  /** The suite of the open session, or undefined before the first command. */
  get cipherSuite(): 3 | 17 | undefined {
    return this.session?.keys.suite.id;
  }

  /**
   * RMCP/ASF presence ping: cheap, sessionless, needs no credentials. Resolves with whether
   * the answering entity claims IPMI support; fails with IpmiTimeoutError if nothing answers.
   */
  async ping(): Promise<{ ipmi: boolean }> {
    if (this.closing) throw new IpmiClosedError();
    const transport = await this.openTransport();
    const tag = this.nextTag();
    const packet = encodeAsfPresencePing(tag);
    return transport.exchange<{ ipmi: boolean }>(
      this.endpoint,
      {
        what: this.what('RMCP presence ping'),
        packet: () => packet,
        judge: (datagram) => {
          // IPMI traffic for a session on this BMC is not ours; anything else must be a pong.
          if (datagram[3] === 0x07) return { kind: 'not-mine' };
          let pong: AsfPresencePong;
          try {
            pong = decodeAsfPresencePong(datagram);
          } catch (error) {
            return { kind: 'malformed', error: error as IpmiMalformedReplyError };
          }
          return pong.tag === tag ? { kind: 'reply', value: { ipmi: pong.ipmi } } : { kind: 'not-mine' };
        },
      },
      this.policy,
    );
  }

  getDeviceId(): Promise<DeviceId> {
    return this.run(getDeviceId());
  }

  getChassisStatus(): Promise<ChassisStatus> {
    return this.run(getChassisStatus());
  }

  /** Returns when the BMC accepted the request; the power state changes after (poll to confirm). */
  chassisControl(op: ChassisControlOp): Promise<void> {
    return this.run(chassisControl(op));
  }

  setBootDevice(request: BootDeviceRequest): Promise<void> {
    return this.run(setBootFlags(request));
  }

  getBootDevice(): Promise<BootFlags> {
    return this.run(getBootFlags());
  }

  /** Closes the session (best effort: one attempt) and, if the client opened it, the transport. */
  close(): Promise<void> {
    this.closing ??= this.serialize(async () => {
      const session = this.session;
      this.session = undefined;
      if (session && this.transport) {
        const transport = await this.transport;
        await this.sessionExchange(transport, session, closeSession(session.bmcSessionId), {
          ...this.policy,
          retries: 0,
        }).catch(() => undefined); // the BMC times the session out anyway
      }
      if (this.ownsTransport && this.transport) await (await this.transport).close();
    });
    return this.closing;
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(task, task);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private openTransport(): Promise<IpmiTransport> {
    this.transport ??= IpmiTransport.open();
    return this.transport;
  }

  private run<T>(command: Command<T>): Promise<T> {
    if (this.closing) return Promise.reject(new IpmiClosedError());
    return this.serialize(async () => {
      const transport = await this.openTransport();
      const session = await this.activeSession(transport);
      try {
        const needed = Privilege[command.privilege];
        if (session.privilege < needed) {
          session.privilege = await this.sessionExchange(transport, session, setSessionPrivilegeLevel(this.privilegeName));
        }
        return await this.sessionExchange(transport, session, command);
      } catch (error) {
        // Unless the BMC answered (a completion code), it may have lost the session (reboot,
        // idle timeout) or the keys no longer agree: start afresh next time.
        if (!(error instanceof IpmiCompletionCodeError)) this.session = undefined;
        throw error;
      }
    });
  }

  private async activeSession(transport: IpmiTransport): Promise<ActiveSession> {
    const current = this.session;
    if (current && Date.now() - current.lastUsedAt < this.sessionIdleMs) return current;
    if (current) {
      // Tell the BMC to free the stale session; no need to wait for its answer.
      transport.send(this.endpoint, this.securePacket(current, closeSession(current.bmcSessionId)));
      this.session = undefined;
    }
    this.session = await this.openSession(transport);
    return this.session;
  }

  private nextRqSeq(): number {
    this.rqSeq = (this.rqSeq + 1) & 0x3f;
    return this.rqSeq;
  }

  private nextTag(): number {
    this.messageTag = (this.messageTag + 1) & 0xff;
    return this.messageTag;
  }

  private what(step: string): string {
    return `${this.endpoint.host}:${this.endpoint.port} ${step}`;
  }

  // -------------------------------------------------------------------------------------
  // Session set-up

  private async openSession(transport: IpmiTransport): Promise<ActiveSession> {
    if (!this.ipmi20Confirmed) {
      const capabilities = await this.sessionlessExchange(transport, getChannelAuthCapabilities(this.privilegeName));
      if (!capabilities.ipmi20) throw new IpmiError(`${this.what('BMC')} does not offer IPMI v2.0 (RMCP+) sessions`);
      this.ipmi20Confirmed = true;
    }
    const consoleSessionId = randomInt(1, 0xffffffff);
    for (let index = 0; ; index++) {
      const suite = this.suites[index]!;
      const opened = await this.openSessionRequest(transport, suite, consoleSessionId);
      if (!opened.accepted) {
        const another = index + 1 < this.suites.length;
        if (another && SUITE_REJECTED_STATUSES.has(opened.status)) continue;
        throw sessionSetupError('open-session', opened.status);
      }
      const session = await this.authenticate(transport, suite, consoleSessionId, opened.bmcSessionId);
      this.opened++;
      this.suites = [suite]; // don't offer a suite this BMC already refused on the next session
      return session;
    }
  }

  private openSessionRequest(
    transport: IpmiTransport,
    suite: CipherSuite,
    consoleSessionId: number,
  ): Promise<OpenSessionOutcome> {
    const tag = this.nextTag();
    const payload = encodeOpenSessionRequest({ tag, privilege: this.privilege, consoleSessionId, suite });
    const packet = encodeV20Packet({ payloadType: PayloadType.openSessionRequest, sessionId: 0, sequence: 0, payload });
    return transport.exchange<OpenSessionOutcome>(
      this.endpoint,
      {
        what: this.what(`Open Session (cipher suite ${suite.id})`),
        packet: () => packet,
        judge: (datagram) => {
          const reply = decodeSetupReply(datagram, PayloadType.openSessionResponse);
          if ('kind' in reply) return reply;
          const response = decodeOpenSessionResponse(reply.payload);
          if (response.tag !== tag) return { kind: 'not-mine' };
          if (!('bmcSessionId' in response)) return { kind: 'reply', value: { accepted: false, status: response.status } };
          if (response.consoleSessionId !== consoleSessionId) return { kind: 'not-mine' };
          const offered = [suite.authentication.id, suite.integrity.id, suite.confidentiality.id];
          if (response.algorithms.some((algorithm, i) => algorithm !== offered[i])) {
            return { kind: 'fail', error: new IpmiMalformedReplyError('Open Session Response: BMC chose algorithms we did not offer') };
          }
          return { kind: 'reply', value: { accepted: true, bmcSessionId: response.bmcSessionId } };
        },
      },
      this.policy,
    );
  }

  private async authenticate(
    transport: IpmiTransport,
    suite: CipherSuite,
    consoleSessionId: number,
    bmcSessionId: number,
  ): Promise<ActiveSession> {
    const consoleRandom = randomBytes(16);
    const role = this.privilege | NAME_ONLY_LOOKUP;
    const rakp1Tag = this.nextTag();
    const rakp1 = encodeV20Packet({
      payloadType: PayloadType.rakp1,
      sessionId: 0,
      sequence: 0,
      payload: encodeRakp1({ tag: rakp1Tag, bmcSessionId, consoleRandom, role, username: this.username }),
    });
    const rakp2 = await transport.exchange(
      this.endpoint,
      {
        what: this.what('RAKP 1'),
        packet: () => rakp1,
        judge: (datagram) => {
          const reply = decodeSetupReply(datagram, PayloadType.rakp2);
          if ('kind' in reply) return reply;
          const message = decodeRakp2(reply.payload, suite);
          if (message.tag !== rakp1Tag) return { kind: 'not-mine' };
          if (!('consoleSessionId' in message)) return { kind: 'fail', error: sessionSetupError('rakp2', message.status) };
          if (message.consoleSessionId !== consoleSessionId) return { kind: 'not-mine' };
          return { kind: 'reply', value: message };
        },
      },
      this.policy,
    );

    const context: RakpContext = {
      suite,
      consoleSessionId,
      bmcSessionId,
      consoleRandom,
      bmcRandom: rakp2.bmcRandom,
      bmcGuid: rakp2.bmcGuid,
      role,
      username: this.username,
      password: this.password,
      bmcKey: this.bmcKey,
    };
    const rakp3Tag = this.nextTag();
    if (!timingSafeEqual(rakp2KeyExchangeCode(context), rakp2.keyExchangeCode)) {
      // Tell the BMC we give up, so it frees the half-open session now rather than at its timeout.
      const abandon = encodeRakp3({ tag: rakp3Tag, status: 0x0f, bmcSessionId, keyExchangeCode: Buffer.alloc(0) });
      transport.send(this.endpoint, encodeV20Packet({ payloadType: PayloadType.rakp3, sessionId: 0, sequence: 0, payload: abandon }));
      throw new IpmiAuthenticationError('rakp2', undefined, 'the BMC key exchange code does not match: wrong password');
    }

    const sik = sessionIntegrityKey(context);
    const rakp3 = encodeV20Packet({
      payloadType: PayloadType.rakp3,
      sessionId: 0,
      sequence: 0,
      payload: encodeRakp3({ tag: rakp3Tag, status: 0, bmcSessionId, keyExchangeCode: rakp3KeyExchangeCode(context) }),
    });
    const rakp4 = await transport.exchange(
      this.endpoint,
      {
        what: this.what('RAKP 3'),
        packet: () => rakp3,
        judge: (datagram) => {
          const reply = decodeSetupReply(datagram, PayloadType.rakp4);
          if ('kind' in reply) return reply;
          const message = decodeRakp4(reply.payload, suite);
          if (message.tag !== rakp3Tag) return { kind: 'not-mine' };
          if (!('consoleSessionId' in message)) return { kind: 'fail', error: sessionSetupError('rakp4', message.status) };
          if (message.consoleSessionId !== consoleSessionId) return { kind: 'not-mine' };
          return { kind: 'reply', value: message };
        },
      },
      this.policy,
    );
    if (!timingSafeEqual(rakp4IntegrityCheckValue(context, sik), rakp4.integrityCheckValue)) {
      throw new IpmiAuthenticationError('rakp4', undefined, 'the BMC integrity check value does not match (wrong BMC key?)');
    }
    return {
      consoleSessionId,
      bmcSessionId,
      keys: deriveSessionKeys(suite, sik),
      nextSequence: 1,
      lastInboundSequence: 0,
      // A new session runs at user level whatever maximum it asked for; run() raises it on demand.
      privilege: Privilege.user,
      lastUsedAt: Date.now(),
    };
  }

  // -------------------------------------------------------------------------------------
  // Command exchanges

  /** Checks an IPMI response belongs to `command` sent with `rqSeq`; returns the verdict for it. */
  private judgeResponse<T>(message: Buffer, command: Command<T>, rqSeq: number): Verdict<T> {
    let response;
    try {
      response = decodeIpmiResponse(message);
    } catch (error) {
      return { kind: 'malformed', error: error as IpmiMalformedReplyError };
    }
    if (response.netFn !== command.netFn + 1 || response.command !== command.command || response.rqSeq !== rqSeq) {
      return { kind: 'not-mine' }; // e.g. a late answer to an earlier attempt
    }
    if (response.completionCode !== 0) {
      return { kind: 'fail', error: new IpmiCompletionCodeError(command.name, response.completionCode) };
    }
    try {
      return { kind: 'reply', value: command.decode(response.data) };
    } catch (error) {
      // The reply is ours and authentic but its data is wrong: retrying would not help.
      return { kind: 'fail', error: error as IpmiMalformedReplyError };
    }
  }

  private sessionlessExchange<T>(transport: IpmiTransport, command: Command<T>): Promise<T> {
    const rqSeq = this.nextRqSeq();
    const packet = encodeSessionlessV15Packet(encodeIpmiRequest({ ...command, rqSeq }));
    return transport.exchange(
      this.endpoint,
      {
        what: this.what(command.name),
        packet: () => packet,
        judge: (datagram) => {
          let reply: InboundPacket;
          try {
            reply = decodePacket(datagram);
          } catch (error) {
            return { kind: 'malformed', error: error as IpmiMalformedReplyError };
          }
          // The BMC answers in the format asked (1.5); some answer in RMCP+ framing, unauthenticated.
          const outsideSession =
            reply.sessionId === 0 &&
            (reply.format === 'ipmi-1.5' || (reply.payloadType === PayloadType.ipmi && !reply.authenticated && !reply.encrypted));
          if (!outsideSession) return { kind: 'not-mine' };
          return this.judgeResponse(reply.payload, command, rqSeq);
        },
      },
      this.policy,
    );
  }

  private securePacket(session: ActiveSession, command: Command<unknown>, rqSeq = this.nextRqSeq()): Buffer {
    const sequence = session.nextSequence;
    // Sequence 0 is reserved for packets outside a session; skip it on wrap-around.
    session.nextSequence = sequence === 0xffffffff ? 1 : sequence + 1;
    return encodeSecureV20Packet(
      { payloadType: PayloadType.ipmi, sessionId: session.bmcSessionId, sequence, payload: encodeIpmiRequest({ ...command, rqSeq }) },
      session.keys,
      randomBytes(16),
    );
  }

  private sessionExchange<T>(
    transport: IpmiTransport,
    session: ActiveSession,
    command: Command<T>,
    policy: RetryPolicy = this.policy,
  ): Promise<T> {
    const rqSeq = this.nextRqSeq();
    return transport.exchange(
      this.endpoint,
      {
        what: this.what(command.name),
        // A retransmission keeps rqSeq (so the BMC may spot a duplicate) but takes a new
        // session sequence number: the BMC drops repeated sequence numbers as replays.
        packet: () => this.securePacket(session, command, rqSeq),
        judge: (datagram) => {
          let packet: InboundPacket;
          try {
            packet = decodePacket(datagram);
          } catch (error) {
            return { kind: 'malformed', error: error as IpmiMalformedReplyError };
          }
          if (packet.format !== 'rmcp+' || packet.payloadType !== PayloadType.ipmi) return { kind: 'not-mine' };
          if (packet.sessionId !== session.consoleSessionId) return { kind: 'not-mine' };
          let message: Buffer;
          try {
            message = openSecurePayload(packet, session.keys);
          } catch (error) {
            return { kind: 'malformed', error: error as IpmiMalformedReplyError };
          }
          if (packet.sequence <= session.lastInboundSequence) return { kind: 'not-mine' }; // replayed
          const verdict = this.judgeResponse(message, command, rqSeq);
          if (verdict.kind === 'reply' || verdict.kind === 'fail') {
            session.lastInboundSequence = packet.sequence;
            session.lastUsedAt = Date.now();
          }
          return verdict;
        },
      },
      policy,
    );
  }
}
