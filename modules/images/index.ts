// Loaded by the appliance when the configuration names the images module.
export { createModule, ImagesOptionsSchema, type ImagesOptions } from './module.js';
export type { StoredManifest } from './manifest.js';
