// The oci module: imports of container images (OCI layouts and archives, `docker save` archives)
// for the images module's POST /api/v1/images/import. The conversion is the image toolkit's
// (images/oci-import.ts: skopeo, umoci, mksquashfs, the agent installed); this module offers it as
// the `containerImages` service, so the images module stores the result without knowing how it
// was made. It runs the tools on the appliance host: they must be installed there
// (scripts/debian-packages.txt), and busybox-static for the initramfs is fetched once into
// `cacheDir`.
import { z } from 'zod';
import type { ContainerImageImporter } from '../../src/contracts/services.js';
import type { ModuleHost, ShoalModule } from '../../src/engine/module.js';
import { importOciImage } from '../../images/oci-import.js';

export const OciOptionsSchema = z
  .object({
    /** Downloaded Debian packages (busybox-static); the default is under the module's data directory. */
    cacheDir: z.string().refine((p) => p.startsWith('/'), 'an absolute path').optional(),
  })
  .strict();
export type OciOptions = z.input<typeof OciOptionsSchema>;

export function createModule(options: Record<string, unknown> = {}): ShoalModule {
  const parsed = OciOptionsSchema.parse(options);
  return {
    name: 'oci',
    start(host: ModuleHost) {
      const cacheDir = parsed.cacheDir ?? `${host.dataDir}/cache`;
      const importer: ContainerImageImporter = {
        async importImage(request, outDir, progress) {
          const { kernelFromDir, ...rest } = request;
          const image = await importOciImage({ ...rest, ...(kernelFromDir ? { kernelFrom: kernelFromDir } : {}) }, { outDir, cacheDir, progress });
          return { ref: image.ref, dir: image.dir };
        },
      };
      host.services.provide('containerImages', importer);
    },
  };
}
