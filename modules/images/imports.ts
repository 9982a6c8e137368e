// Imports of container images and disk files as jobs: POST /api/v1/images/import queues one and
// answers at once (an import takes minutes), GET /api/v1/images/imports/ID shows its progress and
// its outcome. A container image's conversion is the `containerImages` service's (modules/oci); a
// raw or qcow2 disk file's is disk-import.ts, told apart by its first sector. This file only runs one import
// at a time (each is disk- and CPU-bound), keeps what it printed, and stores the result. Jobs live
// in memory: an appliance restart forgets them, and the store drops what a cut-off import left.
import { randomBytes } from 'node:crypto';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { ImportJobView } from '../../src/api/views.js';
import { SKOPEO_REFERENCE, type ContainerImageImporter } from '../../src/contracts/services.js';
import { diskFileFormat, importDiskFile } from './disk-import.js';
import { artifactsOf, IMAGE_NAME, IMAGE_REF } from './manifest.js';
import { refOf, type ImageStore, type StoredImage } from './store.js';

export const ImportRequestSchema = z
  .object({
    source: z
      .string()
      .min(1)
      .refine((s) => s.startsWith('/') || SKOPEO_REFERENCE.test(s), 'an absolute path on the appliance host, or a skopeo reference (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker://REF)'),
    /** NAME or NAME@VERSION; by default the source's file name, and the manifest digest's first 12 hex digits. */
    name: z
      .string()
      .refine((n) => IMAGE_REF.test(n) || IMAGE_NAME.test(n), 'NAME or NAME@VERSION: lowercase letters, digits and dashes, then @ and a version')
      .optional(),
    /** A stored image (NAME@VERSION) whose kernel and modules to boot, for a container image without a kernel. */
    kernelFrom: z.string().regex(IMAGE_REF, 'a stored image, NAME@VERSION').optional(),
    /** The init to run when the image has no /sbin/init: an absolute path inside the image. */
    init: z.string().startsWith('/', 'an absolute path inside the image').optional(),
  })
  .strict();
export type ImportRequest = z.infer<typeof ImportRequestSchema>;

const PROGRESS_LINES = 400;

/** Makes an image directory in `out` from the request's source (`staging` is the job's scratch space). */
type Converter = (out: string, say: (line: string) => void, staging: string) => Promise<{ dir: string; ref: string }>;

function nameAndVersion(request: ImportRequest): { name?: string; version?: string } {
  const [name, version] = request.name?.split('@') ?? [];
  return { ...(name ? { name } : {}), ...(version ? { version } : {}) };
}
const FINISHED_JOBS_KEPT = 50;

export class ImportJobs {
  private readonly jobs = new Map<string, ImportJobView>();
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: ImageStore,
    private readonly importer: () => ContainerImageImporter | undefined,
    private readonly onStored: (image: StoredImage, created: boolean) => void,
  ) {}

  get(id: string): ImportJobView | undefined {
    return this.jobs.get(id);
  }

  /** Newest first. */
  list(): ImportJobView[] {
    return [...this.jobs.values()].reverse();
  }

  /** Queues the import; refuses at once (undefined kernel image, no importer) what would fail anyway. */
  start(request: ImportRequest): ImportJobView {
    const disk = request.source.startsWith('/') ? diskFileFormat(request.source) : undefined;
    let convert: Converter;
    if (disk) {
      if (request.kernelFrom || request.init) throw new ImportRefusal(`${request.source} is a ${disk} disk file: kernelFrom and init apply to container images only`);
      convert = (out, say) => importDiskFile({ source: request.source, format: disk, ...nameAndVersion(request) }, out, say);
    } else {
      if (request.kernelFrom && !this.store.get(request.kernelFrom)) throw new ImportRefusal(`kernelFrom ${request.kernelFrom}: no such image is stored (GET /api/v1/images lists them)`);
      const importer = this.importer();
      if (!importer) throw new ImportUnavailable('container image import needs the oci module in the configuration (modules: - { name: oci })');
      convert = async (out, say, staging) => {
        const kernelFromDir = request.kernelFrom ? await this.imageDir(request.kernelFrom, staging) : undefined;
        return importer.importImage({ source: request.source, ...nameAndVersion(request), ...(kernelFromDir ? { kernelFromDir } : {}), ...(request.init ? { init: request.init } : {}) }, out, say);
      };
    }
    const job: ImportJobView = { id: randomBytes(6).toString('hex'), request, state: 'queued', queuedAt: new Date().toISOString(), progress: [], progressFrom: 0 };
    this.jobs.set(job.id, job);
    this.forgetOldJobs();
    this.queue = this.queue.then(() => this.run(job, convert));
    return job;
  }

  private async run(job: ImportJobView, convert: Converter): Promise<void> {
    job.state = 'running';
    const say = (line: string) => {
      job.progress.push(line);
      if (job.progress.length > PROGRESS_LINES) job.progressFrom += job.progress.splice(0, job.progress.length - PROGRESS_LINES).length;
    };
    let staging: string | undefined;
    try {
      staging = await this.store.stagingDir();
      const built = await convert(join(staging, 'out'), say, staging);
      say(`storing ${built.ref}`);
      const { image, created } = await this.store.importFrom(built.dir, built.ref);
      job.image = { ref: refOf(image.manifest), digest: image.manifest.digest, created };
      say(created ? `stored ${job.image.ref} ${job.image.digest}` : `${job.image.ref} was already stored with the same content`);
      job.state = 'succeeded';
      this.onStored(image, created);
    } catch (error) {
      job.error = (error as Error).message;
      job.state = 'failed';
    } finally {
      job.finishedAt = new Date().toISOString();
      if (staging) await rm(staging, { recursive: true, force: true });
    }
  }

  /** A stored image as the directory a build leaves (image.json and its files), its files linked to the store's blobs. */
  private async imageDir(ref: string, staging: string): Promise<string> {
    const image = this.store.get(ref);
    if (!image) throw new Error(`kernelFrom ${ref}: the image was removed before the import started`);
    const dir = join(staging, 'kernel-from', ref);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'image.json'), `${JSON.stringify(image.manifest, null, 2)}\n`);
    for (const { artifact } of artifactsOf(image.manifest)) await symlink(this.store.blobPath(artifact.sha256), join(dir, artifact.file));
    return dir;
  }

  private forgetOldJobs(): void {
    const finished = [...this.jobs.values()].filter((j) => j.state === 'succeeded' || j.state === 'failed');
    for (const job of finished.slice(0, Math.max(0, finished.length - FINISHED_JOBS_KEPT))) this.jobs.delete(job.id);
  }
}

/** The request cannot be carried out as given (400). */
export class ImportRefusal extends Error {}
/** This appliance cannot import container images (501). */
export class ImportUnavailable extends Error {}

