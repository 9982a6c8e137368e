// Loaded by the appliance when the configuration names the redfish module.
export { createModule } from './module.js';
export * from './client.js';
