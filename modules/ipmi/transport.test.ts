// The shared transport against tiny UDP peers on loopback: bounded retransmission, routing
// replies by sender, and that no reply, however odd, escapes as an exception.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { IpmiCompletionCodeError, IpmiError, IpmiMalformedReplyError, IpmiTimeoutError } from './errors.js';
import {
  ADAPTIVE_WAIT_LIMIT,
  IpmiTransport,
  firstAttemptWait,
  updateRoundTrip,
  type Endpoint,
  type Exchange,
  type RetryPolicy,
} from './transport.js';

/** For exchanges meant to run out of attempts. */
const FAST: RetryPolicy = { timeoutMs: 20, retries: 2, backoff: 2 };
/** For exchanges meant to be answered: a loaded machine must not cause retransmissions. */
const PATIENT: RetryPolicy = { timeoutMs: 5000, retries: 2, backoff: 2 };

interface Peer {
  endpoint: Endpoint;
  received: Buffer[];
  socket: Socket;
}

const sockets: Socket[] = [];
const transports: IpmiTransport[] = [];

async function peer(answer?: (datagram: Buffer, reply: (bytes: Buffer) => void) => void): Promise<Peer> {
  const socket = createSocket('udp4');
  sockets.push(socket);
  const received: Buffer[] = [];
  socket.on('message', (datagram: Buffer, remote: RemoteInfo) => {
    received.push(datagram);
    answer?.(datagram, (bytes) => socket.send(bytes, remote.port, remote.address));
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { endpoint: { host: '127.0.0.1', port: socket.address().port }, received, socket };
}

async function transport(): Promise<IpmiTransport> {
  const opened = await IpmiTransport.open();
  transports.push(opened);
  return opened;
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

afterEach(async () => {
  for (const t of transports.splice(0)) await t.close();
  for (const s of sockets.splice(0)) s.close();
});

/** An exchange whose packet is its attempt number and which accepts any reply starting with `want`. */
function echoExchange(want: string, attempts: number[] = []): Exchange<string> {
  return {
    what: `exchange ${want}`,
    packet: (attempt) => {
      attempts.push(attempt);
      return Buffer.from(`${want}:${attempt}`);
    },
    judge: (datagram) => {
      const text = datagram.toString();
      if (text.startsWith('junk')) return { kind: 'malformed', error: new IpmiMalformedReplyError(text) };
      if (text.startsWith('fail')) return { kind: 'fail', error: new IpmiCompletionCodeError('test', 0xc1) };
      return text.startsWith(want) ? { kind: 'reply', value: text } : { kind: 'not-mine' };
    },
  };
}

describe('IpmiTransport', () => {
  it('sends exactly 1 + retries datagrams to a silent peer, rebuilding each, then times out', async () => {
    const silent = await peer();
    const attempts: number[] = [];
    const error = await (await transport()).exchange(silent.endpoint, echoExchange('a', attempts), FAST).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IpmiTimeoutError);
    expect((error as IpmiTimeoutError).attempts).toBe(3);
    expect(attempts).toEqual([0, 1, 2]);
    await until(() => silent.received.length >= 3);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(silent.received.map(String)).toEqual(['a:0', 'a:1', 'a:2']);
  });

  it('resolves with the reply the exchange accepts and ignores others', async () => {
    const bmc = await peer((datagram, reply) => {
      reply(Buffer.from('someone else'));
      reply(Buffer.from(`ok ${datagram}`));
    });
    const t = await transport();
    const exchange = echoExchange('ok');
    exchange.packet = () => Buffer.from('ping');
    await expect(t.exchange(bmc.endpoint, exchange, PATIENT)).resolves.toBe('ok ping');
    expect(t.pendingExchanges).toBe(0);
  });

  it('fails at once on a fail verdict, without retransmitting', async () => {
    const bmc = await peer((_datagram, reply) => reply(Buffer.from('fail')));
    await expect((await transport()).exchange(bmc.endpoint, echoExchange('x'), PATIENT)).rejects.toBeInstanceOf(
      IpmiCompletionCodeError,
    );
    expect(bmc.received).toHaveLength(1);
  });

  it('keeps waiting after junk, and reports the junk, not a timeout, if nothing better comes', async () => {
    const junk = await peer((_datagram, reply) => reply(Buffer.from('junk bytes')));
    const error = await (await transport()).exchange(junk.endpoint, echoExchange('y'), FAST).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IpmiMalformedReplyError);
    expect(junk.received).toHaveLength(3);
  });

  it('turns a judge that throws into a malformed reply instead of an uncaught exception', async () => {
    const bmc = await peer((_datagram, reply) => reply(Buffer.from('boom')));
    const exchange: Exchange<never> = {
      what: 'throwing judge',
      packet: () => Buffer.from('q'),
      judge: () => {
        throw new TypeError('judge bug');
      },
    };
    const error = await (await transport()).exchange(bmc.endpoint, exchange, FAST).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IpmiMalformedReplyError);
    expect(String(error)).toMatch(/judge bug/);
  });

  it('routes concurrent replies by sender address and port', async () => {
    const t = await transport();
    // Both peers answer with the same text: only the sender tells the replies apart.
    const peers = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        peer((_datagram, reply) => setTimeout(() => reply(Buffer.from('same answer')), (5 - i) * 3)),
      ),
    );
    const replies = await Promise.all(
      peers.map((p, i) => {
        const exchange = echoExchange('same');
        exchange.packet = () => Buffer.from(`to ${i}`);
        return t.exchange(p.endpoint, exchange, PATIENT);
      }),
    );
    expect(replies).toEqual(Array(5).fill('same answer'));
    for (const p of peers) expect(p.received.map(String)).toEqual([`to ${peers.indexOf(p)}`]);
    expect(t.unsolicitedDatagrams).toBe(0);
  });

  it('counts datagrams nobody waits for instead of delivering them', async () => {
    const t = await transport();
    const stranger = await peer();
    stranger.socket.send(Buffer.from('unsolicited'), t.localEndpoint.port, t.localEndpoint.host);
    await until(() => t.unsolicitedDatagrams === 1);
  });

  it('fails exchanges still waiting when closed', async () => {
    const silent = await peer();
    const t = await IpmiTransport.open();
    const pending = t.exchange(silent.endpoint, echoExchange('z'), { timeoutMs: 10_000, retries: 0, backoff: 1 });
    await t.close();
    await expect(pending).rejects.toBeInstanceOf(IpmiError);
    await expect(t.exchange(silent.endpoint, echoExchange('z'), FAST)).rejects.toThrow(/closed/);
  });
});

describe('adaptive first wait', () => {
  const policy: RetryPolicy = { timeoutMs: 1000, retries: 2, backoff: 2 };

  it('waits the configured timeout for a BMC not heard from yet, or one that answers fast', () => {
    expect(firstAttemptWait(undefined, policy)).toBe(1000);
    expect(firstAttemptWait(updateRoundTrip(undefined, 5), policy)).toBe(1000);
  });

  it('waits longer for a BMC that answers slowly, up to the limit', () => {
    let estimate = updateRoundTrip(undefined, 900);
    expect(firstAttemptWait(estimate, policy)).toBe(900 + 4 * 450);
    estimate = updateRoundTrip(estimate, 5000);
    expect(firstAttemptWait(estimate, policy)).toBe(1000 * ADAPTIVE_WAIT_LIMIT);
  });

  it('settles near a steady round trip as the deviation decays', () => {
    let estimate = updateRoundTrip(undefined, 1200);
    for (let i = 0; i < 40; i++) estimate = updateRoundTrip(estimate, 1200);
    expect(estimate.smoothedMs).toBeCloseTo(1200);
    expect(firstAttemptWait(estimate, policy)).toBeGreaterThanOrEqual(1200);
    expect(firstAttemptWait(estimate, policy)).toBeLessThan(1300);
  });
});
