// The contract between the DHCP socket loop and what answers a client. The loop (server.ts)
// parses and screens datagrams and hands each client request to one handler; each mode is its
// own handler (full.ts hands out addresses, proxy.ts only boot information), in the manner of
// tinkerbell/smee. Also the vocabulary both handlers and the server's users share.
import type { DhcpPacket } from './codec.js';
import type { InboundDatagram } from './transport.js';

export interface DhcpHandler {
  /** One well-formed BOOTREQUEST from an Ethernet client; throwing drops this packet only. */
  handle(request: DhcpPacket, datagram: InboundDatagram): void;
  /** Sends what the handler still holds back, before the sockets close. */
  flush?(): void;
}

export interface Reservation {
  ip: string;
  hostname?: string;
}

/** The engine's node inventory, as the DHCP server needs it. */
export interface AddressBook {
  /** The fixed address of a known node, by colon-separated lower-case MAC. */
  reservationFor(mac: string): Reservation | undefined;
  /** Whether some node holds `ip` as its reservation; the dynamic pool never hands it out. */
  isReserved(ip: string): boolean;
  /** Whether this server answers the client at all: not a node another appliance acts on (default: every client). */
  answers?(mac: string): boolean;
}

export type DhcpEventType = 'discover' | 'offer' | 'request' | 'ack' | 'nak' | 'release' | 'decline' | 'inform';

export interface DhcpEvent {
  type: DhcpEventType;
  mac: string;
  ip?: string;
  arch: number | undefined;
  isIpxe: boolean;
}

/** What an unknown client said about itself, so it can be recorded as a discovered node. */
export interface UnknownClientInfo {
  arch: number | undefined;
  isIpxe: boolean;
  vendorClassId?: string;
  hostname?: string;
  /** RFC 4578 option 97 as a lower-case hex string. */
  uuid?: string;
  /** The relay the request came through, when relayed. */
  relay?: string;
}

/** What the server's user hears of its clients. */
export interface DhcpHooks {
  onEvent?: (event: DhcpEvent) => void;
  onUnknownClient?: (mac: string, info: UnknownClientInfo) => void;
  /** The x86-64 UEFI PXE program for this client when it is not boot.uefiX64File (shim, for a Secure Boot node). */
  uefiX64FileFor?: (mac: string) => string | undefined;
}

export interface DhcpCounters {
  received: number;
  /** Datagrams that failed to parse, or were not a client request with a message type. */
  malformed: number;
  /** Well-formed requests this server does not answer (not ours, not a boot client in proxy mode, no record). */
  ignored: number;
  /** REQUESTs that selected another server's offer. */
  foreignServer: number;
  /** DISCOVERs for which no address could be given (no reservation, pool empty or absent). */
  noAddress: number;
  offers: number;
  acks: number;
  naks: number;
  releases: number;
  declines: number;
  informs: number;
  sendErrors: number;
  /** ACKs not sent because the lease store failed to store their leases. */
  storeErrors: number;
  /** Packets whose handling threw (a failing store or address book); dropped, the server goes on. */
  handlerErrors: number;
  /** Exceptions thrown by onEvent / onUnknownClient, caught so a hook never stops the server. */
  hookErrors: number;
}

export function zeroCounters(): DhcpCounters {
  return {
    received: 0,
    malformed: 0,
    ignored: 0,
    foreignServer: 0,
    noAddress: 0,
    offers: 0,
    acks: 0,
    naks: 0,
    releases: 0,
    declines: 0,
    informs: 0,
    sendErrors: 0,
    storeErrors: 0,
    handlerErrors: 0,
    hookErrors: 0,
  };
}
