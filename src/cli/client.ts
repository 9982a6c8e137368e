// The CLI's side of the API: base URL and token resolution, and problem+json errors turned into
// one readable line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

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
}

export class ApiClient {
  readonly base: string;
  private readonly token: string;

  constructor(options: ClientOptions) {
    this.base = (options.url ?? process.env.SHOAL_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
    const token = options.token ?? process.env.SHOAL_TOKEN ?? readToken(options.dataDir ?? process.env.SHOAL_DATA_DIR ?? './data');
    if (!token) throw new Error('no API token: pass --token, set SHOAL_TOKEN, or run where the data directory (--data) holds api-token');
    this.token = token;
  }

  async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
        ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw new Error(`cannot reach the appliance at ${this.base}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try {
        const problem = JSON.parse(text) as { title?: string; detail?: string };
        message = `${problem.title ?? res.statusText}: ${problem.detail ?? ''}`;
      } catch {
        // not problem+json; show the body as it is
      }
      throw new ApiError(res.status, message);
    }
    if (res.status === 204 || text === '') return undefined as T;
    return (res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text) as T;
  }

  /** Server-sent events, one callback per event, until the signal aborts. */
  async stream(after: number, onEvent: (event: { rev: number; [k: string]: unknown }) => void, signal: AbortSignal): Promise<void> {
    const res = await fetch(`${this.base}/api/v1/events/stream`, {
      headers: { authorization: `Bearer ${this.token}`, 'last-event-id': String(after) },
      signal,
    });
    if (!res.ok || !res.body) throw new ApiError(res.status, `event stream refused: ${res.status}`);
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
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
  }
}

function readToken(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, 'api-token'), 'utf8').trim();
  } catch {
    return undefined;
  }
}
