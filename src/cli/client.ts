// The CLI's side of the API: base URL, token and trust resolution, and problem+json errors turned
// into one readable line. Requests go through node:http(s) rather than fetch: Node 20's fetch takes
// no CA of its own and cannot pin a certificate (that needs undici), and an https API with a
// self-signed certificate needs one or the other.
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { normalizeFingerprint } from '../api/tls.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface ClientOptions {
  url?: string | undefined;
  token?: string | undefined;
  dataDir?: string | undefined;
  /** PEM file of the CA (or the self-signed certificate itself) the API's certificate must chain to. */
  ca?: string | undefined;
  /** SHA-256 fingerprint the API's certificate must have; its name and issuer are then not checked. */
  fingerprint?: string | undefined;
}

/** How an https API is trusted: the system's CAs, a CA file, or one pinned certificate. */
type Trust = { kind: 'system' } | { kind: 'ca'; ca: Buffer } | { kind: 'pin'; fingerprint: string };

export class ApiClient {
  readonly base: string;
  private readonly token: string;
  private readonly trust: Trust;

  constructor(options: ClientOptions) {
    this.base = (options.url ?? process.env.SHOAL_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
    const protocol = URL.canParse(this.base) ? new URL(this.base).protocol : '';
    if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`the appliance URL ${this.base} is not an http:// or https:// URL`);
    const token = options.token ?? process.env.SHOAL_TOKEN ?? readToken(options.dataDir ?? process.env.SHOAL_DATA_DIR ?? './data');
    if (!token) throw new Error('no API token: pass --token, set SHOAL_TOKEN, or run where the data directory (--data) holds api-token');
    this.token = token;
    this.trust = resolveTrust(options.ca ?? nonEmpty(process.env.SHOAL_CA), options.fingerprint ?? nonEmpty(process.env.SHOAL_FINGERPRINT));
  }

  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const res = await this.send(method, `/api/v1${path}`, {
      authorization: `Bearer ${this.token}`,
      ...(payload !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) } : {}),
    }, payload);
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) {
      let message = text;
      try {
        const problem = JSON.parse(text) as { title?: string; detail?: string };
        message = `${problem.title ?? res.statusMessage}: ${problem.detail ?? ''}`;
      } catch {
        // not problem+json; show the body as it is
      }
      throw new ApiError(status, message);
    }
    if (status === 204 || text === '') return undefined as T;
    return (res.headers['content-type']?.includes('json') ? JSON.parse(text) : text) as T;
  }

  /** Server-sent events, one callback per event, until the signal aborts. */
  async stream(after: number, onEvent: (event: { rev: number; [k: string]: unknown }) => void, signal: AbortSignal): Promise<void> {
    const res = await this.send('GET', '/api/v1/events/stream', { authorization: `Bearer ${this.token}`, 'last-event-id': String(after) }, undefined, signal);
    if (res.statusCode !== 200) {
      res.resume();
      throw new ApiError(res.statusCode ?? 0, `event stream refused: ${res.statusCode}`);
    }
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (data) onEvent(JSON.parse(data) as { rev: number });
        }
      }
    } catch (err) {
      // A stream cut by the caller's abort ends with a socket error; say it was the abort, as fetch did.
      throw signal.aborted ? signal.reason : err;
    }
  }

  /** One request; resolves with the response once its head arrived. Nothing is sent before the server is trusted. */
  private async send(method: string, path: string, headers: OutgoingHttpHeaders, body: string | undefined, signal?: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(`${this.base}${path}`);
    const reach = (err: Error) => (err instanceof UntrustedServer ? err : new Error(`cannot reach the appliance at ${this.base}: ${explainTls(err)}`));
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const common = { method, host, port, path: `${url.pathname}${url.search}`, headers, ...(signal ? { signal } : {}) };
    let pinned: TLSSocket | undefined;
    if (url.protocol === 'https:' && this.trust.kind === 'pin') pinned = await pinnedConnection(host, port, this.trust.fingerprint, this.base).catch((err: Error) => Promise.reject(reach(err)));
    return new Promise((resolve, reject) => {
      const req =
        url.protocol === 'http:'
          ? httpRequest(common)
          : pinned
            ? // The TLS session is already up and its certificate checked; HTTP runs over it.
              httpRequest({ ...common, createConnection: () => pinned })
            : httpsRequest({ ...common, ...(this.trust.kind === 'ca' ? { ca: this.trust.ca } : {}) });
      req.once('response', resolve);
      req.once('error', (err) => reject(signal?.aborted ? err : reach(err)));
      req.end(body);
    });
  }
}

/** A pinned certificate that does not match: the message names both fingerprints, so a rotated certificate can be told from an interloper. */
export class UntrustedServer extends Error {}

function resolveTrust(ca: string | undefined, fingerprint: string | undefined): Trust {
  if (ca && fingerprint) throw new Error('give either --ca (SHOAL_CA) or --fingerprint (SHOAL_FINGERPRINT), not both');
  if (fingerprint) {
    try {
      return { kind: 'pin', fingerprint: normalizeFingerprint(fingerprint) };
    } catch (err) {
      throw new Error(`--fingerprint: ${(err as Error).message}`);
    }
  }
  if (ca) {
    try {
      return { kind: 'ca', ca: readFileSync(ca) };
    } catch (err) {
      throw new Error(`--ca: cannot read ${ca}: ${(err as Error).message}`);
    }
  }
  return { kind: 'system' };
}

/**
 * A TLS connection whose certificate is checked against the pin before any byte of HTTP (the
 * bearer token) is written on it. The chain is not verified (a self-signed certificate has none);
 * the pin stands for it.
 */
function pinnedConnection(host: string, port: number, expected: string, base: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, rejectUnauthorized: false, ...(isIP(host) ? {} : { servername: host }) });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const presented = socket.getPeerX509Certificate()?.fingerprint256 ?? 'none';
      if (presented === expected) {
        socket.off('error', reject);
        return resolve(socket);
      }
      socket.destroy();
      reject(new UntrustedServer(`the appliance at ${base} presented a certificate with SHA-256 fingerprint ${presented}, not the expected ${expected} (--fingerprint or SHOAL_FINGERPRINT); nothing was sent`));
    });
  });
}

/** Node's certificate errors, with what the operator can do about them. */
function explainTls(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'].includes(code)) {
    return `its certificate is not trusted (${err.message}): pass --ca FILE or --fingerprint SHA256 (shoal serve prints it), or set SHOAL_CA or SHOAL_FINGERPRINT`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `${err.message}; connect by a name the certificate carries, or pin it with --fingerprint`;
  return err.message;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === '' ? undefined : value;
}

function readToken(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, 'api-token'), 'utf8').trim();
  } catch {
    return undefined;
  }
}
