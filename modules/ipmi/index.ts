// Public surface of the IPMI module: the client, its shared transport, its types and errors.
export { IpmiClient, type IpmiClientOptions } from './client.js';
export { IpmiTransport, type Endpoint } from './transport.js';
export type { BootDevice, BootDeviceRequest, BootFlags, ChassisControlOp, ChassisStatus, DeviceId, PrivilegeName } from './commands.js';
export {
  IpmiAuthenticationError,
  IpmiClosedError,
  IpmiCompletionCodeError,
  IpmiError,
  IpmiMalformedReplyError,
  IpmiSessionError,
  IpmiTimeoutError,
} from './errors.js';
export { createModule } from './module.js';
