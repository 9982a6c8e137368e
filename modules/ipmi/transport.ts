// One UDP socket shared by any number of BMC sessions. Replies are routed by the sender's
// address and port, then by each waiting exchange's own matcher (session ID, message tag,
// sequence number), so fifty BMCs polled at once cost one socket and one event handler.
// Retransmission lives here: every exchange has a bounded number of attempts with a
// growing wait, so a dead BMC costs a known, small number of packets.
import { createSocket, type Socket } from 'node:dgram';
import { IpmiError, IpmiMalformedReplyError, IpmiTimeoutError } from './errors.js';

export interface Endpoint {
  host: string;
  port: number;
}

export interface RetryPolicy {
  /**
   * Least wait for the first attempt; each retransmission waits `backoff` times longer. A BMC
   * seen answering slowly gets a longer first wait (see firstAttemptWait), up to
   * ADAPTIVE_WAIT_LIMIT times this.
   */
  timeoutMs: number;
  /** Retransmissions after the first attempt. */
  retries: number;
  backoff: number;
}

/** What an exchange makes of one datagram from its endpoint. */
export type Verdict<T> =
  /** The reply this exchange waited for. */
  | { kind: 'reply'; value: T }
  /** Someone else's traffic (another session on the same BMC): not ours to judge. */
  | { kind: 'not-mine' }
  /**
   * Cannot be decoded. Kept as the reason if no good reply follows, but not fatal at once:
   * a stray or forged datagram must not abort an exchange a real reply would complete.
   */
  | { kind: 'malformed'; error: IpmiMalformedReplyError }
  /** Ours, authentic, and it ends the exchange with this error (e.g. a completion code). */
  | { kind: 'fail'; error: IpmiError };

export interface Exchange<T> {
  /** A label for errors, e.g. "127.0.0.1:9001 Get Chassis Status". */
  what: string;
  /** Builds the datagram for attempt n (0-based); session packets need a fresh sequence number each time. */
  packet(attempt: number): Buffer;
  judge(datagram: Buffer): Verdict<T>;
}

interface Pending {
  judge(datagram: Buffer): void;
  abort(error: IpmiError): void;
}

/** Smoothed round-trip time of one BMC and its mean deviation (RFC 6298 style). */
export interface RoundTripEstimate {
  smoothedMs: number;
  deviationMs: number;
}

/** How far past the configured timeout a slow BMC's first wait may grow. */
export const ADAPTIVE_WAIT_LIMIT = 4;

/**
 * Folds one round trip into the estimate. Samples run from the first transmission, so a reply
 * to a retransmission overstates the time: that errs towards waiting longer, the safe side.
 */
export function updateRoundTrip(estimate: RoundTripEstimate | undefined, sampleMs: number): RoundTripEstimate {
  if (!estimate) return { smoothedMs: sampleMs, deviationMs: sampleMs / 2 };
  return {
    smoothedMs: 0.875 * estimate.smoothedMs + 0.125 * sampleMs,
    deviationMs: 0.75 * estimate.deviationMs + 0.25 * Math.abs(estimate.smoothedMs - sampleMs),
  };
}

/**
 * The first attempt's wait: the configured timeout, or longer for a BMC known to answer slowly
 * (a busy BMC that gets a retransmission runs the command twice and falls further behind).
 */
export function firstAttemptWait(estimate: RoundTripEstimate | undefined, policy: RetryPolicy): number {
  if (!estimate) return policy.timeoutMs;
  const wanted = estimate.smoothedMs + 4 * estimate.deviationMs;
  return Math.min(Math.max(policy.timeoutMs, Math.ceil(wanted)), policy.timeoutMs * ADAPTIVE_WAIT_LIMIT);
}

function endpointKey(address: string, port: number): string {
  return `${address}:${port}`;
}

export class IpmiTransport {
  private readonly pending = new Map<string, Set<Pending>>();
  private readonly roundTrips = new Map<string, RoundTripEstimate>();
  private closed = false;
  /** Datagrams nobody waited for: late replies to retransmissions, strays. For diagnostics. */
  unsolicitedDatagrams = 0;
  /** Requests sent again because no reply came in time. For diagnostics. */
  retransmissions = 0;

  private constructor(private readonly socket: Socket) {
    socket.on('message', (datagram, remote) => this.dispatch(datagram, endpointKey(remote.address, remote.port)));
    // Without a listener an 'error' event would throw out of the event loop. Send failures
    // are reported per datagram by send()'s callback; the exchange then just waits and retries.
    socket.on('error', () => undefined);
  }

  /** Opens a socket on an ephemeral port of `bindAddress` (loopback unless told otherwise). */
  static async open(bindAddress = '127.0.0.1'): Promise<IpmiTransport> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, bindAddress, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new IpmiTransport(socket);
  }

  private dispatch(datagram: Buffer, key: string): void {
    const waiting = this.pending.get(key);
    if (!waiting || waiting.size === 0) {
      this.unsolicitedDatagrams++;
      return;
    }
    // Copy: a judged exchange removes itself from the set while we iterate.
    for (const exchange of [...waiting]) exchange.judge(datagram);
  }

  /** Sends without waiting for any reply (e.g. telling a BMC we abandon a session). */
  send(endpoint: Endpoint, datagram: Buffer): void {
    if (this.closed) return;
    this.socket.send(datagram, endpoint.port, endpoint.host, () => undefined);
  }

  /** Sends a request and resolves with the first reply the exchange accepts. */
  exchange<T>(endpoint: Endpoint, exchange: Exchange<T>, policy: RetryPolicy): Promise<T> {
    if (this.closed) return Promise.reject(new IpmiError('IPMI transport is closed'));
    const key = endpointKey(endpoint.host, endpoint.port);
    const started = Date.now();
    return new Promise<T>((resolve, reject) => {
      let attempt = 0;
      let waitMs = firstAttemptWait(this.roundTrips.get(key), policy);
      let timer: NodeJS.Timeout | undefined;
      let lastMalformed: IpmiMalformedReplyError | undefined;

      const finish = (outcome: () => void): void => {
        clearTimeout(timer);
        const set = this.pending.get(key);
        set?.delete(entry);
        if (set?.size === 0) this.pending.delete(key);
        outcome();
      };

      const entry: Pending = {
        judge: (datagram) => {
          let verdict: Verdict<T>;
          try {
            verdict = exchange.judge(datagram);
          } catch (error) {
            // A judge is meant to return verdicts; a throw is still only a bad datagram.
            verdict = {
              kind: 'malformed',
              error: error instanceof IpmiMalformedReplyError ? error : new IpmiMalformedReplyError(String(error)),
            };
          }
          if (verdict.kind === 'reply' || verdict.kind === 'fail') {
            this.roundTrips.set(key, updateRoundTrip(this.roundTrips.get(key), Date.now() - started));
          }
          if (verdict.kind === 'reply') finish(() => resolve(verdict.value));
          else if (verdict.kind === 'fail') finish(() => reject(verdict.error));
          else if (verdict.kind === 'malformed') lastMalformed = verdict.error;
        },
        abort: (error) => finish(() => reject(error)),
      };

      const transmit = (): void => {
        let datagram: Buffer;
        try {
          datagram = exchange.packet(attempt);
        } catch (error) {
          finish(() => reject(error));
          return;
        }
        this.socket.send(datagram, endpoint.port, endpoint.host, () => undefined);
        timer = setTimeout(() => {
          attempt++;
          if (attempt > policy.retries) {
            const elapsed = Date.now() - started;
            finish(() => reject(lastMalformed ?? new IpmiTimeoutError(exchange.what, attempt, elapsed)));
            return;
          }
          waitMs = Math.round(waitMs * policy.backoff);
          this.retransmissions++;
          transmit();
        }, waitMs);
      };

      let set = this.pending.get(key);
      if (!set) this.pending.set(key, (set = new Set()));
      set.add(entry);
      transmit();
    });
  }

  /** Where replies come back to, for logs and diagnostics. */
  get localEndpoint(): Endpoint {
    const { address, port } = this.socket.address();
    return { host: address, port };
  }

  get pendingExchanges(): number {
    let count = 0;
    for (const set of this.pending.values()) count += set.size;
    return count;
  }

  /** Closes the socket; exchanges still waiting fail at once instead of running out their retries. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const set of [...this.pending.values()]) {
      for (const exchange of [...set]) exchange.abort(new IpmiError('IPMI transport closed during an exchange'));
    }
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
