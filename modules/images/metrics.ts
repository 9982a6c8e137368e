// The images module's Prometheus metrics, on the appliance's registry (served at /metrics): the
// node-facing file requests by file and outcome, the bytes sent, and the Range requests among
// them, so an operator can tell whether nodes get their images and how much the store serves.
import type { Request, Response } from 'express';
import { Counter, type Registry } from 'prom-client';
import type { ArtifactRole } from './manifest.js';

/** The file a request named; `unknown` for a path the index does not name (answered 404). */
export type ImageFileRoute = ArtifactRole | 'unknown';
export type ImageRequestOutcome = 'full' | 'partial' | 'not-modified' | 'not-found' | 'precondition-failed' | 'unsatisfiable' | 'error' | 'aborted';

const OUTCOME_OF_STATUS: Record<number, ImageRequestOutcome> = {
  200: 'full',
  206: 'partial',
  304: 'not-modified',
  404: 'not-found',
  412: 'precondition-failed',
  416: 'unsatisfiable',
};

export class ImagesMetrics {
  private readonly requests: Counter<'route' | 'outcome'>;
  private readonly bytes: Counter<'route'>;
  private readonly rangeRequests: Counter<'outcome'>;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'shoal_image_requests_total',
      help: 'Image file requests from nodes, by route (kernel, initrd, rootfs, disk, unknown) and outcome (full, partial, not-modified, not-found, precondition-failed, unsatisfiable, error, aborted)',
      labelNames: ['route', 'outcome'] as const,
      registers: [registry],
    });
    this.bytes = new Counter({
      name: 'shoal_image_bytes_total',
      help: 'Image file bytes sent in GET responses that completed (200 and 206), by route',
      labelNames: ['route'] as const,
      registers: [registry],
    });
    this.rangeRequests = new Counter({
      name: 'shoal_image_range_requests_total',
      help: 'Image file requests with a Range header, by the same outcomes (full: If-Range named other bytes)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    });
  }

  /**
   * Counts one request once its response ends: by its status when it was sent in full, as
   * `aborted` when the client left first, as `error` when the caller says the blob failed.
   * Returns that call, for a response destroyed mid-stream by the server's own failure.
   */
  observe(req: Request, res: Response, route: ImageFileRoute): { failedMidStream(): void } {
    let failed = false;
    const count = (outcome: ImageRequestOutcome) => {
      this.requests.inc({ route, outcome });
      if (req.headers.range !== undefined) this.rangeRequests.inc({ outcome });
    };
    // On finish, not close: the last byte is with the OS before the client can have read it.
    res.once('finish', () => {
      count(OUTCOME_OF_STATUS[res.statusCode] ?? 'error');
      const length = Number(res.getHeader('content-length'));
      if (req.method === 'GET' && (res.statusCode === 200 || res.statusCode === 206) && length > 0) this.bytes.inc({ route }, length);
    });
    res.once('close', () => {
      if (!res.writableFinished) count(failed ? 'error' : 'aborted');
    });
    return { failedMidStream: () => void (failed = true) };
  }
}
