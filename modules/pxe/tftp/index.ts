// The TFTP module's public surface: a read-only server, its configuration, the resolver
// contract for virtual files, and the packet codec (for probes and tests).
export { TftpServer, TftpBindError, type TftpServerHooks, type TftpLogEntry, type TftpLogEvent } from './server.js';
export { TftpServerConfigSchema, TftpConfigError, parseTftpServerConfig, type TftpServerConfig, type TftpServerConfigInput } from './config.js';
export {
  bufferSource,
  confinedSegments,
  directoryResolver,
  openRegularFile,
  type TftpPeer,
  type TftpReadRequest,
  type TftpResolution,
  type TftpResolver,
  type TftpSource,
} from './resolver.js';
export type { TransferObservation, TransferFailure } from './transfer.js';
