// HTTP(S) exchanges with one BMC, on node:http/node:https rather than global fetch:
// Node 20's fetch only takes custom TLS verification through an undici Agent, and the
// `undici` package is not a dependency. Here each TLS connection is made by hand so the
// certificate is checked (CA, any, or a pinned SHA-256) *before* the request, and its
// credentials, are handed to the socket.
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { normalizeFingerprint, type RedfishEndpoint } from './endpoint.js';
import {
  RedfishMalformedReplyError,
  RedfishTimeoutError,
  RedfishTlsError,
  RedfishUnreachableError,
} from './errors.js';

export interface HttpExchange {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** A path on the BMC's origin, e.g. `/redfish/v1/Systems/1`. */
  path: string;
  headers?: Record<string, string>;
  /** Serialized as JSON when present. */
  body?: unknown;
}

export interface HttpReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Larger replies are not Redfish resources we read; refuse them rather than buffer them. */
const maxReplyBytes = 4 * 1024 * 1024;

export class BmcTransport {
  constructor(private readonly endpoint: RedfishEndpoint) {}

  /** Turns a URI the BMC handed back (absolute or relative) into a path on its origin; refuses other hosts. */
  pathOnBmc(uri: string): string {
    let url: URL;
    try {
      url = new URL(uri, this.endpoint.origin);
    } catch {
      throw new RedfishMalformedReplyError(`BMC referred to an invalid URI ${JSON.stringify(uri)}`);
    }
    if (url.origin !== new URL(this.endpoint.origin).origin) {
      throw new RedfishMalformedReplyError(`BMC referred to ${url.origin}, not itself (${this.endpoint.origin})`);
    }
    return `${url.pathname}${url.search}`;
  }

  send(exchange: HttpExchange): Promise<HttpReply> {
    const endpoint = this.endpoint;
    const payload = exchange.body === undefined ? undefined : JSON.stringify(exchange.body);
    const headers: Record<string, string> = {
      Accept: 'application/json',
      'OData-Version': '4.0',
      ...exchange.headers,
    };
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json; charset=utf-8';
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    }

    return new Promise<HttpReply>((resolve, reject) => {
      let settled = false;
      let pendingTlsSocket: TLSSocket | undefined;
      let request: ClientRequest | undefined;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        pendingTlsSocket?.destroy();
        request?.destroy();
        reject(error);
      };
      const succeed = (reply: HttpReply) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve(reply);
      };
      const deadline = setTimeout(() => {
        fail(
          new RedfishTimeoutError(
            `${exchange.method} ${endpoint.origin}${exchange.path}: no reply within ${endpoint.requestTimeoutMs} ms`,
          ),
        );
      }, endpoint.requestTimeoutMs);

      const options: RequestOptions = {
        method: exchange.method,
        host: endpoint.host,
        port: endpoint.port,
        path: exchange.path,
        headers,
      };
      // One connection per exchange, no pooling: BMCs are slow to serve and quick to drop idle
      // keep-alives. Node uses `createConnection` only when no agent is given.
      if (endpoint.protocol === 'https:') {
        options.createConnection = (_opts: unknown, onCreate: (error: Error | null, socket: Socket) => void) => {
          pendingTlsSocket = this.connectTrusted(onCreate);
          return undefined;
        };
      } else {
        options.agent = false;
      }
      const send = endpoint.protocol === 'https:' ? httpsRequest : httpRequest;
      request = send(options, (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxReplyBytes) {
            fail(new RedfishMalformedReplyError(`${exchange.method} ${exchange.path}: reply larger than ${maxReplyBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => {
          succeed({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
        response.on('error', (error) => fail(this.unreachable(exchange, error)));
      });
      request.on('error', (error) => {
        fail(error instanceof RedfishTlsError ? error : this.unreachable(exchange, error));
      });
      request.end(payload);
    });
  }

  private unreachable(exchange: HttpExchange, error: Error): RedfishUnreachableError {
    const code = (error as NodeJS.ErrnoException).code;
    return new RedfishUnreachableError(
      `${exchange.method} ${this.endpoint.origin}${exchange.path}: ${code ?? ''} ${error.message}`.trim(),
      { cause: error },
    );
  }

  /** Opens a TLS connection and hands it on only once the certificate is trusted under the endpoint's policy. */
  private connectTrusted(onCreate: (error: Error | null, socket: Socket) => void): TLSSocket {
    const { host, port, tlsTrust } = this.endpoint;
    const socket = tlsConnect({
      host,
      port,
      // SNI must not be an IP address.
      ...(isIP(host) ? {} : { servername: host }),
      // `ca`: Node checks chain and host name. `pinned`: we compare the fingerprint below. `any`: no check.
      rejectUnauthorized: tlsTrust.kind === 'ca',
    });
    const onError = (error: Error) => {
      // Once TCP is up, a failure before `secureConnect` is the handshake or the certificate check.
      const duringHandshake = !socket.connecting;
      onCreate(
        duringHandshake
          ? new RedfishTlsError(`TLS with ${host}:${port} failed: ${error.message}`, { cause: error })
          : error,
        socket,
      );
    };
    // Stays attached after hand-over: Node wraps `onCreate` in once(), so later errors are no-ops
    // here and reach the request through the listener http adds, never an unhandled 'error' event.
    socket.on('error', onError);
    socket.once('secureConnect', () => {
      if (tlsTrust.kind === 'pinned') {
        const presented = socket.getPeerCertificate().fingerprint256;
        if (!presented || normalizeFingerprint(presented) !== tlsTrust.fingerprintSha256) {
          socket.destroy();
          onCreate(
            new RedfishTlsError(`BMC ${host}:${port} presented certificate ${presented ?? '(none)'}, not the pinned one`),
            socket,
          );
          return;
        }
      }
      onCreate(null, socket);
    });
    return socket;
  }
}
