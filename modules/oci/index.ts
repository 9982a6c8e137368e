// Loaded by the appliance when the configuration names the oci module.
export { createModule, OciOptionsSchema, type OciOptions } from './module.js';
