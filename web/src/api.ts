// Calls to the appliance's API with the operator's token. Errors keep the API's problem+json
// `detail` (and the fields at fault) so the page can show them exactly as the API said them.

const TOKEN_KEY = 'shoal.token';

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    detail: string,
    /** Per-field problems of a rejected body or inventory file. */
    readonly errors: { path?: string; message?: string; line?: number }[] = [],
  ) {
    super(detail);
  }
}

/** Listeners told when the API refuses the token, so the page can return to the login form. */
const unauthorizedListeners = new Set<(err: ApiError) => void>();
export function onUnauthorized(listener: (err: ApiError) => void): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export async function api<T>(method: string, path: string, body?: unknown, token = storedToken()): Promise<T> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (typeof body === 'string') {
    headers['content-type'] = 'application/yaml';
    payload = body;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
  } catch (err) {
    throw new ApiError(0, 'Appliance unreachable', `the appliance did not answer: ${(err as Error).message}`);
  }
  if (res.ok) return (res.status === 204 ? undefined : await res.json()) as T;
  throw await problemOf(res);
}

export async function problemOf(res: Response): Promise<ApiError> {
  return problemFrom(res.status, res.statusText, await res.text());
}

/** The API's problem+json as an ApiError; a body that is not one is kept as the detail. */
function problemFrom(status: number, statusText: string, text: string): ApiError {
  try {
    const problem = JSON.parse(text) as { title?: string; detail?: string; errors?: ApiError['errors'] };
    const err = new ApiError(status, problem.title ?? statusText, problem.detail ?? text, problem.errors ?? []);
    if (status === 401) for (const listener of unauthorizedListeners) listener(err);
    return err;
  } catch {
    return new ApiError(status, statusText, text || `HTTP ${status}`);
  }
}

/**
 * Sends a file as the request body. XMLHttpRequest rather than fetch: only it reports how much of
 * the body has gone out (`onProgress(sent, total)`), which is what a large image upload needs.
 */
export function upload<T>(path: string, body: Blob, contentType: string, onProgress: (sent: number, total: number) => void): Promise<{ status: number; body: T }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/v1${path}`);
    const token = storedToken();
    if (token !== null) xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.setRequestHeader('content-type', contentType);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : body.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(xhr.responseText);
        } catch {
          parsed = undefined;
        }
        resolve({ status: xhr.status, body: parsed as T });
      } else reject(problemFrom(xhr.status, xhr.statusText, xhr.responseText));
    };
    xhr.onerror = () => reject(new ApiError(0, 'Appliance unreachable', 'the upload did not reach the appliance, or the connection broke during it'));
    xhr.send(body);
  });
}

/** Runs `work` over `items` with at most `limit` calls in flight; one failure does not stop the rest. */
export async function eachLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>, onSettled?: (done: number) => void): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: 'fulfilled', value: await work(items[i]!) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
      onSettled?.(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
