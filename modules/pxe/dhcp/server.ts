// DHCPv4 server with PXE, iPXE and UEFI HTTP boot (RFC 2131, 2132, 4578), in full mode
// (addresses and boot information) or ProxyDHCP mode (boot information only, beside
// another DHCP server). This is the packet path: it parses and screens what the transport
// receives and hands each client request to the handler of its mode (full.ts, proxy.ts).
// Address decisions come from an injected AddressBook; bound leases go to an injected
// LeaseStore; what clients do is reported through onEvent.
import { BOOTREQUEST, macOf, parseDhcpPacket } from './codec.js';
import { parseDhcpServerConfig, type DhcpServerConfig, type DhcpServerConfigInput } from './config.js';
import { AddressAllocator } from './allocation.js';
import { FullHandler } from './full.js';
import { zeroCounters, type AddressBook, type DhcpCounters, type DhcpHandler, type DhcpHooks } from './handler.js';
import type { LeaseStore } from './leases.js';
import { ProxyHandler } from './proxy.js';
import { Responder } from './responder.js';
import { UdpDhcpTransport, type DhcpTransport, type InboundDatagram } from './transport.js';

export interface DhcpServerDeps extends DhcpHooks {
  addressBook: AddressBook;
  leases: LeaseStore;
  /** Defaults to UDP sockets on the configured interface address. */
  transport?: DhcpTransport;
  /** Milliseconds since the epoch; injectable so lease expiry can be tested without waiting. */
  now?: () => number;
}

export class DhcpServer {
  readonly config: DhcpServerConfig;
  readonly counters: DhcpCounters = zeroCounters();

  private readonly transport: DhcpTransport;
  private readonly handler: DhcpHandler;
  /** Full mode only: the allocator behind its handler. */
  private readonly addresses: AddressAllocator | undefined;
  private started = false;
  private readonly addressBook: AddressBook;

  /** Throws DhcpConfigError when the configuration is invalid. */
  constructor(config: DhcpServerConfigInput, deps: DhcpServerDeps) {
    this.config = parseDhcpServerConfig(config);
    this.addressBook = deps.addressBook;
    this.transport = deps.transport ?? new UdpDhcpTransport(this.config.interface.name, this.config.interface.address, this.config.mode === 'proxy');
    const responder = new Responder(this.config, this.counters, this.transport, deps);
    if (this.config.mode === 'proxy') {
      this.handler = new ProxyHandler(responder, deps.addressBook);
    } else {
      this.addresses = new AddressAllocator(this.config, deps.addressBook, deps.leases, deps.now ?? Date.now);
      this.handler = new FullHandler(responder, this.addresses);
    }
  }

  /** Addresses held out of the pools after a DECLINE; at most the pools' size. */
  get declinedCount(): number {
    return this.addresses?.declinedCount ?? 0;
  }

  /** Binds the sockets; rejects with DhcpBindError (EADDRINUSE) when another server holds port 67. */
  async start(): Promise<void> {
    if (this.started) throw new Error('DHCP server already started');
    await this.transport.open((datagram) => this.receive(datagram));
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.handler.flush?.();
    this.started = false;
    await this.transport.close();
  }

  private receive(datagram: InboundDatagram): void {
    this.counters.received += 1;
    const parsed = parseDhcpPacket(datagram.data);
    if (!parsed.ok) {
      this.counters.malformed += 1;
      return;
    }
    const request = parsed.packet;
    if (request.op !== BOOTREQUEST || request.options.messageType === undefined) {
      this.counters.malformed += 1;
      return;
    }
    // Only Ethernet clients: the MAC is the node's identity in the inventory.
    if (request.htype !== 1 || request.hlen !== 6) {
      this.counters.ignored += 1;
      return;
    }
    // Another appliance's node: its owner answers it, this server stays silent (no offer, no NAK).
    if (this.addressBook.answers && !this.addressBook.answers(macOf(request))) {
      this.counters.ignored += 1;
      return;
    }
    try {
      this.handler.handle(request, datagram);
    } catch {
      // A failing store or address book, or a bug: drop this packet, keep serving the rest.
      this.counters.handlerErrors += 1;
    }
  }
}
