// Loaded by the appliance when the configuration names the pxe module.
export { createModule, PxeModule, PxeOptionsSchema, type PxeOptions } from './module.js';
