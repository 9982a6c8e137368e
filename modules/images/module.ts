// The images module: the image store behind three faces. Nodes fetch kernels, initrds, root and disk
// images over plain HTTP (`/images/<name>/<version>/<file>`, Range and ETag); operators list,
// import and remove images under /api/v1/images, and import container images as jobs
// (imports.ts, converted by the oci module's `containerImages` service); other modules look images up through the
// `images` service (the boot module builds iPXE scripts from it, the agent module maps a
// reported image to its digest). What nodes fetch is counted at /metrics (metrics.ts).
import { rm } from 'node:fs/promises';
import type { Request, Response } from 'express';
import { z } from 'zod';
import type { ImageCatalog, ImageInfo } from '../../src/contracts/services.js';
import type { ModuleHost, ShoalModule } from '../../src/engine/module.js';
import { HttpProblem, sendProblem } from '../../src/api/problem.js';
import { openApiParts } from '../../src/api/openapi.js';
import { artifactsOf, IMAGE_NAME, IMAGE_REF, IMAGE_VERSION } from './manifest.js';
import { ImportJobs, ImportRefusal, ImportRequestSchema, ImportUnavailable } from './imports.js';
import { ImagesMetrics } from './metrics.js';
import { extractFlatTar, TarError } from './tar.js';
import { ImageStore, ImageStoreError, imageInfo, refOf, type StoredImage } from './store.js';

export const ImagesOptionsSchema = z
  .object({
    /** Image directories (each with an image.json) imported at start, e.g. by the Ansible role. */
    import: z.array(z.string().refine((p) => p.startsWith('/'), 'an absolute path')).default([]),
  })
  .strict();
export type ImagesOptions = z.input<typeof ImagesOptionsSchema>;

const ImportBodySchema = z.object({ path: z.string().min(1).refine((p) => p.startsWith('/'), 'an absolute path on the appliance host') }).strict();

const UploadQuerySchema = z.object({ ref: z.string().regex(IMAGE_REF, 'name@version, e.g. compute@3') }).strict();

/** Kernel, initramfs, a root image and a compressed disk image fit; a bigger upload is a mistake, not an image. */
const MAX_UPLOAD_BYTES = 8 * 2 ** 30;

/** Bytes per read when streaming a blob: fewer, larger writes than the 64 KiB default. */
const STREAM_CHUNK_BYTES = 1 << 20;

const STATUS_OF: Record<ImageStoreError['kind'], [number, string]> = {
  'invalid-source': [400, 'Invalid image source'],
  verification: [422, 'Image verification failed'],
  conflict: [409, 'Conflict'],
  'not-found': [404, 'Not found'],
};

const { problem, ok, path } = openApiParts;
const imageRef = path('ref', 'name@version, e.g. compute@2');

/** The operator routes below, for /api/v1/openapi.json. */
const OPENAPI: Record<string, Record<string, unknown>> = {
  '/images': {
    get: { summary: 'Stored images with digest, size and the nodes that want each', responses: { 200: ok('the images'), 401: problem } },
    post: {
      summary: 'Import the image in a directory on the appliance host (its image.json and files), verifying every digest',
      requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(ImportBodySchema, { io: 'input' }) } } },
      responses: { 200: ok('already stored, unchanged'), 201: ok('imported'), 400: problem, 401: problem, 409: problem, 422: problem },
    },
  },
  '/images/upload': {
    post: {
      summary: 'Upload an image from the operator\'s machine: a flat tar of image.json and the files it names',
      parameters: [{ name: 'ref', in: 'query', required: true, description: 'name@version the tar holds', schema: { type: 'string' } }],
      requestBody: { required: true, content: { 'application/x-tar': { schema: { type: 'string', format: 'binary' } } } },
      responses: { 200: ok('already stored, unchanged'), 201: ok('imported'), 400: problem, 401: problem, 409: problem, 415: problem, 422: problem },
    },
  },
  '/images/import': {
    post: {
      summary: 'Import a container image (an OCI layout or archive, or a docker save archive, on the appliance host) as a bootable image; answers at once with the import job (needs the oci module)',
      requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(ImportRequestSchema, { io: 'input' }) } } },
      responses: { 202: ok('the import job, queued; follow its Location'), 400: problem, 401: problem, 501: problem },
    },
  },
  '/images/imports': {
    get: { summary: 'Container image imports this appliance ran since it started, newest first', responses: { 200: ok('the import jobs'), 401: problem } },
  },
  '/images/imports/{id}': {
    get: {
      summary: 'One import: queued, running, succeeded (with the stored image) or failed (with the reason), and what it printed',
      parameters: [path('id', 'the import job id')],
      responses: { 200: ok('the import job'), 401: problem, 404: problem },
    },
  },
  '/images/{ref}': {
    get: { summary: 'One stored image', parameters: [imageRef], responses: { 200: ok('the image'), 401: problem, 404: problem } },
    delete: { summary: 'Remove an image no node wants (409 names the nodes that do)', parameters: [imageRef], responses: { 204: { description: 'removed' }, 401: problem, 404: problem, 409: problem } },
  },
};

export function createModule(options: Record<string, unknown> = {}): ShoalModule {
  const parsed = ImagesOptionsSchema.parse(options);

  return {
    name: 'images',
    openapi: OPENAPI,
    async start(host: ModuleHost) {
      const store = await ImageStore.open(host.dataDir);
      for (const problem of await store.damaged()) host.log.error({ problem }, 'stored image is damaged; remove and import it again');
      for (const dir of parsed.import) await importAtStart(store, dir, host);
      host.services.provide('images', catalogOf(store));
      serveFiles(store, host, new ImagesMetrics(host.metrics));
      importApi(store, host);
      operatorApi(store, host);
      host.log.info({ images: store.list().map((i) => refOf(i.manifest)) }, 'image store open');
    },
  };
}

/**
 * A seed directory that cannot be read or verified stops the start: the configuration is wrong.
 * A seed that conflicts with a stored ref (rebuilt since, e.g. a new Debian kernel) does not:
 * nodes keep getting the stored image, and the log says how to replace it.
 */
async function importAtStart(store: ImageStore, dir: string, host: ModuleHost): Promise<void> {
  try {
    const { image, created } = await store.importFrom(dir);
    host.log.info({ ref: refOf(image.manifest), digest: image.manifest.digest, created, dir }, created ? 'image imported' : 'image already stored');
  } catch (err) {
    if (err instanceof ImageStoreError && err.kind === 'conflict') return void host.log.warn({ dir, reason: err.message }, 'image not imported');
    throw new Error(`importing ${dir}: ${(err as Error).message}`);
  }
}

function catalogOf(store: ImageStore): ImageCatalog {
  return {
    get: (ref) => {
      const image = store.get(ref);
      return image && imageInfo(image);
    },
    // Several refs may hold the same content; the first by ref answers, so the answer is stable.
    byDigest: (digest) => {
      const image = store.list().find((i) => i.manifest.digest === digest);
      return image && imageInfo(image);
    },
    list: () => store.list().map(imageInfo),
  };
}

/** GET|HEAD /images/<name>/<version>/<file>: only files the index names, so no path escapes. */
function serveFiles(store: ImageStore, host: ModuleHost, metrics: ImagesMetrics): void {
  host.http.get('/images/:name/:version/:file', (req: Request, res: Response) => {
    const { name, version, file } = req.params as Record<string, string>;
    const image = IMAGE_NAME.test(name!) && IMAGE_VERSION.test(version!) ? store.get(`${name}@${version}`) : undefined;
    const named = image && artifactsOf(image.manifest).find((a) => a.artifact.file === file);
    const served = metrics.observe(req, res, named?.role ?? 'unknown');
    if (!named) return sendProblem(res, 404, 'Not found', `no image file ${req.path}`);
    const { artifact } = named;
    // The content's hash is the strongest validator there is; mtime says nothing about a blob.
    res.setHeader('ETag', `"${artifact.sha256}"`);
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Cache-Control', 'no-cache');
    const sendOptions = { lastModified: false, cacheControl: false, acceptRanges: true, highWaterMark: STREAM_CHUNK_BYTES };
    res.sendFile(store.blobPath(artifact.sha256), sendOptions, (err?: Error & { status?: number; code?: string; headers?: Record<string, string> }) => {
      if (!err || err.code === 'ECONNABORTED') return;
      if (res.headersSent) {
        host.log.error({ err, path: req.path }, 'serving an image file failed mid-stream');
        served.failedMidStream();
        return void res.destroy();
      }
      // 416 (range outside the file) and 412 (If-Match) come back here, with their headers.
      if (err.status === 416 || err.status === 412) {
        for (const [header, value] of Object.entries(err.headers ?? {})) res.setHeader(header, value);
        return sendProblem(res, err.status, err.status === 416 ? 'Range not satisfiable' : 'Precondition failed', `${req.path} is ${artifact.size} bytes`);
      }
      host.log.error({ err, path: req.path, sha256: artifact.sha256 }, 'image blob cannot be served');
      sendProblem(res, 500, 'Image file unavailable', `the blob of ${req.path} cannot be read; see the appliance log`);
    });
  });
}

/** Before operatorApi: /images/imports would otherwise be read as the ref "imports". */
function importApi(store: ImageStore, host: ModuleHost): void {
  const jobs = new ImportJobs(
    store,
    () => host.services.get('containerImages'),
    (image, created) => host.log.info({ ref: refOf(image.manifest), digest: image.manifest.digest, created }, created ? 'image imported from a container image or disk file' : 'imported image already stored'),
  );
  host.api.post('/images/import', (req, res) => {
    const request = ImportRequestSchema.parse(req.body ?? {});
    let job;
    try {
      job = jobs.start(request);
    } catch (err) {
      if (err instanceof ImportRefusal) throw new HttpProblem(400, 'Import refused', err.message);
      if (err instanceof ImportUnavailable) throw new HttpProblem(501, 'Import unavailable', err.message);
      throw err;
    }
    host.log.info({ id: job.id, source: request.source }, 'image import queued');
    res.status(202).location(`/api/v1/images/imports/${job.id}`).json(job);
  });
  host.api.get('/images/imports', (_req, res) => {
    res.json({ imports: jobs.list() });
  });
  host.api.get('/images/imports/:id', (req, res) => {
    const job = jobs.get(req.params.id as string);
    if (!job) throw new HttpProblem(404, 'Not found', `no import ${req.params.id as string}; GET /api/v1/images/imports lists them (an appliance restart forgets them)`);
    res.json(job);
  });
}

function operatorApi(store: ImageStore, host: ModuleHost): void {
  /** Names of the nodes whose desired state asks for `ref`. */
  const nodesWanting = (ref: string) =>
    host
      .nodes()
      .filter((n) => host.desired(n.id).image === ref)
      .map((n) => n.name);
  const view = (image: StoredImage) => {
    const info: ImageInfo = imageInfo(image);
    const files = artifactsOf(image.manifest);
    return {
      ...info,
      size: files.reduce((sum, f) => sum + f.artifact.size, 0),
      importedAt: image.importedAt,
      ...(image.manifest.builtFrom ? { builtFrom: image.manifest.builtFrom } : {}),
      nodes: nodesWanting(info.ref),
    };
  };
  const storedImage = (req: Request): StoredImage => {
    const ref = req.params.ref as string;
    if (!IMAGE_REF.test(ref)) throw new HttpProblem(400, 'Invalid image reference', `"${ref}" is not name@version (e.g. compute@2)`);
    const image = store.get(ref);
    if (!image) throw new HttpProblem(404, 'Not found', `no image ${ref}; GET /api/v1/images lists those stored`);
    return image;
  };
  const asProblem = (err: unknown): unknown => {
    if (!(err instanceof ImageStoreError)) return err;
    const [status, title] = STATUS_OF[err.kind];
    return new HttpProblem(status, title, err.message);
  };

  host.api.get('/images', (_req, res) => {
    res.json({ images: store.list().map(view) });
  });

  host.api.get('/images/:ref', (req, res) => {
    res.json(view(storedImage(req)));
  });

  host.api.post('/images', async (req, res) => {
    const { path } = ImportBodySchema.parse(req.body ?? {});
    const { image, created } = await store.importFrom(path).catch((err: unknown) => {
      throw asProblem(err);
    });
    host.log.info({ ref: refOf(image.manifest), digest: image.manifest.digest, created, path }, created ? 'image imported' : 'image already stored');
    res
      .status(created ? 201 : 200)
      .location(`/api/v1/images/${encodeURIComponent(refOf(image.manifest))}`)
      .json(view(image));
  });

  // An image from the operator's machine: a flat tar of image.json and its files.
  host.api.post('/images/upload', async (req, res) => {
    const { access_token: _token, ...query } = req.query as Record<string, unknown>;
    const { ref } = UploadQuerySchema.parse(query);
    if (!req.is('application/x-tar')) throw new HttpProblem(415, 'Unsupported body', 'send a tar of image.json and its files as application/x-tar');
    const staging = await store.stagingDir();
    try {
      await extractFlatTar(req, staging, MAX_UPLOAD_BYTES).catch((err: unknown) => {
        if (err instanceof TarError) throw new HttpProblem(400, 'Invalid upload', err.message);
        // The client went away mid-body: nothing to answer, nothing stored.
        if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') throw new HttpProblem(400, 'Upload interrupted', 'the upload ended before the archive did');
        throw err;
      });
      const { image, created } = await store.importFrom(staging, ref).catch((err: unknown) => {
        throw asProblem(err);
      });
      host.log.info({ ref, digest: image.manifest.digest, created }, created ? 'image uploaded' : 'uploaded image already stored');
      res
        .status(created ? 201 : 200)
        .location(`/api/v1/images/${encodeURIComponent(ref)}`)
        .json(view(image));
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });

  host.api.delete('/images/:ref', async (req, res) => {
    const ref = refOf(storedImage(req).manifest);
    const wanting = nodesWanting(ref);
    if (wanting.length > 0) {
      throw new HttpProblem(409, 'Image in use', `${ref} is the desired image of ${wanting.length} node${wanting.length === 1 ? '' : 's'}: ${wanting.join(', ')}; set another image on them first`, { nodes: wanting });
    }
    await store.remove(ref).catch((err: unknown) => {
      throw asProblem(err);
    });
    host.log.info({ ref }, 'image removed');
    res.status(204).end();
  });
}
