// The DHCP server's public surface, for the engine's boot facet.
export { DhcpServer } from './server.js';
export type { DhcpServerDeps } from './server.js';
export type { AddressBook, DhcpCounters, DhcpEvent, DhcpEventType, Reservation, UnknownClientInfo } from './handler.js';
export { DhcpConfigError, parseDhcpServerConfig } from './config.js';
export type { DhcpServerConfig, DhcpServerConfigInput } from './config.js';
export { MemoryLeaseStore, SqliteLeaseStore } from './leases.js';
export type { Lease, LeaseStore } from './leases.js';
export { DhcpBindError, UdpDhcpTransport } from './transport.js';
export type { DhcpTransport, InboundDatagram } from './transport.js';
export { ClientArch, classifyClient, decideBoot } from './boot.js';
export type { BootDecision, ClientKind } from './boot.js';
export { DhcpParseError, parseDhcpPacket, serializeDhcpPacket } from './codec.js';
export type { DhcpOptions, DhcpPacket } from './codec.js';
