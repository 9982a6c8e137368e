// Errors as RFC 9457 problem+json, with a message an operator can act on.
import type { NextFunction, Request, Response } from 'express';
import { z } from 'zod';
import { ValidationError } from '../domain/errors.js';
import { ConflictError, NotFoundError } from '../state/cluster-state.js';
import { formatZodIssues } from '../domain/zod-issues.js';
import { InventoryError } from '../state/inventory.js';
import { ProfileRenderError } from '../state/profiles.js';
import { FencedError, StoreUnavailableError } from '../state/store.js';

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    detail: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

export function sendProblem(res: Response, status: number, title: string, detail: string, extra: Record<string, unknown> = {}): void {
  res.status(status).type('application/problem+json').send(JSON.stringify({ type: 'about:blank', title, status, detail, ...extra }));
}

export function problemHandler(log: { error(obj: object, msg: string): void }) {
  return (err: unknown, _req: Request, res: Response, _next: NextFunction): void => {
    if (err instanceof HttpProblem) return sendProblem(res, err.status, err.title, err.message, err.extra);
    if (err instanceof z.ZodError) {
      return sendProblem(res, 400, 'Invalid request', formatZodIssues(err).join('; '), {
        errors: err.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      });
    }
    if (err instanceof InventoryError) return sendProblem(res, 400, 'Invalid inventory', err.message, { errors: err.problems });
    if (err instanceof ProfileRenderError) {
      return sendProblem(res, 400, 'Template does not render', err.message, { profile: err.profile, node: err.node, where: err.template.where, ...(err.template.line !== undefined ? { line: err.template.line } : {}) });
    }
    if (err instanceof NotFoundError) return sendProblem(res, 404, 'Not found', err.message);
    if (err instanceof ConflictError) return sendProblem(res, 409, 'Conflict', err.message);
    if (err instanceof StoreUnavailableError) {
      res.setHeader('Retry-After', '5');
      return sendProblem(res, 503, 'State store unavailable', `${err.message}. The write was under way when the store went: it is kept in memory and committed when the store answers, so read before writing again`);
    }
    // This appliance lost a lease while the write was on its way: nothing was written; the write may be sent again.
    if (err instanceof FencedError) return sendProblem(res, 503, 'Fenced', err.message, { lease: err.claim.name, epoch: err.claim.epoch, ...(err.current ? { holder: err.current.holder, currentEpoch: err.current.epoch } : {}) });
    const body = err as { type?: string; status?: number; message?: string };
    if (body?.type === 'entity.parse.failed') return sendProblem(res, 400, 'Invalid JSON', `the request body is not valid JSON: ${body.message}`);
    if (body?.type === 'entity.too.large') return sendProblem(res, 413, 'Body too large', 'the request body is larger than the API accepts');
    if (err instanceof ValidationError) return sendProblem(res, 400, 'Invalid request', err.message);
    log.error({ err }, 'API request failed');
    sendProblem(res, 500, 'Internal error', 'the appliance failed to handle this request; see its log');
  };
}
