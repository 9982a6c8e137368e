// DHCPv4 server with PXE, iPXE and UEFI HTTP boot (RFC 2131, 2132, 4578), in full mode
// (addresses and boot information) or ProxyDHCP mode (boot information only, beside
// another DHCP server). Address decisions come from an injected AddressBook; bound leases
// go to an injected LeaseStore; what clients do is reported through onEvent.
import {
  BOOTREPLY,
  BOOTREQUEST,
  BROADCAST_FLAG,
  MessageType,
  ipToNumber,
  macOf,
  numberToIp,
  parseDhcpPacket,
  serializeDhcpPacket,
  type DhcpOptions,
  type DhcpPacket,
} from './codec.js';
import { classifyClient, decideBoot, IPXE_NO_PXEDHCP_OPTIONS, PXE_VENDOR_OPTIONS, type BootDecision, type ClientKind } from './boot.js';
import { cidrRange, parseDhcpServerConfig, type DhcpServerConfig, type DhcpServerConfigInput, type SubnetConfig } from './config.js';
import type { Lease, LeaseStore } from './leases.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, UdpDhcpTransport, type DhcpTransport, type InboundDatagram } from './transport.js';

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

export interface DhcpServerDeps {
  addressBook: AddressBook;
  leases: LeaseStore;
  onEvent?: (event: DhcpEvent) => void;
  onUnknownClient?: (mac: string, info: UnknownClientInfo) => void;
  /** Defaults to UDP sockets on the configured interface address. */
  transport?: DhcpTransport;
  /** Milliseconds since the epoch; injectable so lease expiry can be tested without waiting. */
  now?: () => number;
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

interface Subnet {
  config: SubnetConfig;
  network: number;
  broadcast: number;
  mask: string;
  broadcastAddress: string;
  pool?: { start: number; end: number };
}

interface Offer {
  ip: string;
  hostname?: string;
  expiresAt: number;
}

const ZERO = '0.0.0.0';
const OFFER_PRUNE_THRESHOLD = 4096;
const LIMITED_BROADCAST = '255.255.255.255';

export class DhcpServer {
  readonly config: DhcpServerConfig;
  readonly counters: DhcpCounters = {
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

  private readonly subnets: Subnet[];
  private readonly transport: DhcpTransport;
  private readonly now: () => number;
  private readonly offersByMac = new Map<string, Offer>();
  private readonly offeredIps = new Map<string, string>();
  /** Addresses a client DECLINEd (found in use by someone else), until the given time. */
  private readonly declinedUntil = new Map<string, number>();
  /** Where each subnet's pool scan resumes, so allocation does not rescan taken addresses. */
  private readonly poolCursor = new Map<Subnet, number>();
  private offerPruneAt = OFFER_PRUNE_THRESHOLD;
  private pendingAcks: Array<{ lease: Lease; reply: DhcpPacket; request: DhcpPacket; kind: ClientKind }> = [];
  private started = false;

  /** Throws DhcpConfigError when the configuration is invalid. */
  constructor(
    config: DhcpServerConfigInput,
    private readonly deps: DhcpServerDeps,
  ) {
    this.config = parseDhcpServerConfig(config);
    this.subnets = this.config.subnets.map((s) => {
      const range = cidrRange(s.cidr)!;
      const subnet: Subnet = {
        config: s,
        network: range.network,
        broadcast: range.broadcast,
        mask: range.mask,
        broadcastAddress: numberToIp(range.broadcast),
      };
      if (s.pool) subnet.pool = { start: ipToNumber(s.pool.start), end: ipToNumber(s.pool.end) };
      return subnet;
    });
    this.transport = deps.transport ?? new UdpDhcpTransport(this.config.interface.name, this.config.interface.address, this.config.mode === 'proxy');
    this.now = deps.now ?? Date.now;
  }

  /** Addresses held out of the pools after a DECLINE; at most the pools' size. */
  get declinedCount(): number {
    return this.declinedUntil.size;
  }

  /** Binds the sockets; rejects with DhcpBindError (EADDRINUSE) when another server holds port 67. */
  async start(): Promise<void> {
    if (this.started) throw new Error('DHCP server already started');
    await this.transport.open((datagram) => this.receive(datagram));
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.flushAcks();
    this.started = false;
    await this.transport.close();
  }

  // ---- the packet path -----------------------------------------------------------------

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
    try {
      if (this.config.mode === 'proxy') this.handleProxy(request, datagram);
      else this.handleFull(request);
    } catch {
      // A failing store or address book, or a bug: drop this packet, keep serving the rest.
      this.counters.handlerErrors += 1;
    }
  }

  private handleFull(request: DhcpPacket): void {
    switch (request.options.messageType) {
      case MessageType.DISCOVER:
        return this.onDiscover(request);
      case MessageType.REQUEST:
        return this.onRequest(request);
      case MessageType.RELEASE:
        return this.onRelease(request);
      case MessageType.DECLINE:
        return this.onDecline(request);
      case MessageType.INFORM:
        return this.onInform(request);
      default:
        this.counters.ignored += 1;
    }
  }

  private onDiscover(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    this.emit({ type: 'discover', mac, arch: kind.arch, isIpxe: kind.isIpxe });
    const subnet = this.subnetOfClient(request);
    if (!subnet) {
      this.counters.ignored += 1;
      return;
    }
    const reservation = this.deps.addressBook.reservationFor(mac);
    if (!reservation) this.reportUnknown(mac, request, kind);
    const address = this.chooseAddress(mac, subnet, reservation, request.options.requestedIp);
    if (!address) {
      this.counters.noAddress += 1;
      return;
    }
    this.holdOffer(mac, address);
    const reply = this.reply(request, MessageType.OFFER, subnet, address.ip, address.hostname);
    this.applyBoot(reply, decideBoot(kind, mac, this.config), kind, true);
    this.counters.offers += 1;
    this.send(reply, request);
    this.emit({ type: 'offer', mac, ip: address.ip, arch: kind.arch, isIpxe: kind.isIpxe });
  }

  /** RFC 2131 4.3.2: the client's state is told by server id, requested address and ciaddr. */
  private onRequest(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    const { serverId, requestedIp } = request.options;
    const ciaddr = request.ciaddr === ZERO ? undefined : request.ciaddr;
    this.emit({ type: 'request', mac, ip: requestedIp ?? ciaddr, arch: kind.arch, isIpxe: kind.isIpxe });

    if (serverId !== undefined) {
      // SELECTING: the client chose an offer. Another server's: forget ours.
      if (serverId !== this.config.interface.address) {
        this.forgetOffer(mac);
        this.counters.foreignServer += 1;
        return;
      }
      const subnet = this.subnetOfClient(request);
      const ip = requestedIp ?? ciaddr;
      if (!subnet || !ip) {
        this.counters.ignored += 1;
        return;
      }
      const allowed = this.addressFor(mac, subnet);
      if (allowed && allowed.ip === ip) this.acknowledge(request, subnet, allowed, kind);
      else this.refuse(request, kind);
      return;
    }

    if (requestedIp !== undefined && !ciaddr) {
      // INIT-REBOOT: the client remembers an address; NAK if wrong, silent if we have no record.
      const subnet = this.subnetOfClient(request);
      if (!subnet) {
        // A relayed network we do not serve: another server's business.
        this.counters.ignored += 1;
        return;
      }
      if (!inSubnet(subnet, requestedIp)) {
        this.refuse(request, kind); // RFC 2131 4.3.2: the client moved to another network
        return;
      }
      this.confirmKnownAddress(request, subnet, requestedIp, kind);
      return;
    }

    if (ciaddr) {
      // RENEWING (unicast to us) or REBINDING (broadcast): extend the lease on ciaddr.
      const subnet = request.giaddr !== ZERO ? this.subnetByAddress(request.giaddr) : this.subnetByAddress(ciaddr);
      if (!subnet) {
        this.counters.ignored += 1;
        return;
      }
      // A rebinding client asks every server; confirmKnownAddress stays silent without our record.
      this.confirmKnownAddress(request, subnet, ciaddr, kind);
      return;
    }
    this.counters.malformed += 1;
  }

  /** ACK when our record for `mac` is `ip`, NAK when it is another address, silence without a record. */
  private confirmKnownAddress(request: DhcpPacket, subnet: Subnet, ip: string, kind: ClientKind): void {
    const mac = macOf(request);
    if (!this.hasRecord(mac)) {
      this.counters.ignored += 1;
      return;
    }
    const allowed = this.addressFor(mac, subnet);
    if (allowed && allowed.ip === ip) this.acknowledge(request, subnet, allowed, kind);
    else this.refuse(request, kind);
  }

  /**
   * Queues the ACK: the ACKs of one event-loop turn are stored in one putMany (one SQLite
   * transaction) and sent only once stored, so a client never holds a lease we could lose.
   * Until then the offer stays, keeping the address from being offered to anyone else.
   */
  private acknowledge(request: DhcpPacket, subnet: Subnet, address: Reservation, kind: ClientKind): void {
    const mac = macOf(request);
    const lease: Lease = { mac, ip: address.ip, expiresAt: this.now() + this.config.leaseSeconds * 1000 };
    if (address.hostname) lease.hostname = address.hostname;
    const reply = this.reply(request, MessageType.ACK, subnet, address.ip, address.hostname);
    this.applyBoot(reply, decideBoot(kind, mac, this.config), kind, true);
    this.pendingAcks.push({ lease, reply, request, kind });
    if (this.pendingAcks.length === 1) setImmediate(() => this.flushAcks());
  }

  private flushAcks(): void {
    const batch = this.pendingAcks;
    if (batch.length === 0) return;
    this.pendingAcks = [];
    try {
      this.deps.leases.putMany(batch.map((b) => b.lease));
    } catch {
      // No ACK for a lease we could not store; the client retries its REQUEST.
      this.counters.storeErrors += batch.length;
      return;
    }
    for (const { lease, reply, request, kind } of batch) {
      this.forgetOffer(lease.mac);
      this.counters.acks += 1;
      this.send(reply, request);
      this.emit({ type: 'ack', mac: lease.mac, ip: lease.ip, arch: kind.arch, isIpxe: kind.isIpxe });
    }
  }

  private refuse(request: DhcpPacket, kind: ClientKind): void {
    const mac = macOf(request);
    this.forgetOffer(mac);
    const reply = this.blankReply(request, MessageType.NAK);
    this.counters.naks += 1;
    this.send(reply, request);
    this.emit({ type: 'nak', mac, arch: kind.arch, isIpxe: kind.isIpxe });
  }

  private onRelease(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    this.emit({ type: 'release', mac, ip: request.ciaddr, arch: kind.arch, isIpxe: kind.isIpxe });
    const serverId = request.options.serverId;
    const lease = this.deps.leases.get(mac);
    if ((serverId !== undefined && serverId !== this.config.interface.address) || !lease || lease.ip !== request.ciaddr) {
      this.counters.ignored += 1;
      return;
    }
    this.deps.leases.delete(mac);
    this.counters.releases += 1;
  }

  private onDecline(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    const ip = request.options.requestedIp;
    this.emit({ type: 'decline', mac, ip, arch: kind.arch, isIpxe: kind.isIpxe });
    const serverId = request.options.serverId;
    const lease = this.deps.leases.get(mac);
    // Only the address we gave this MAC: DECLINE carries no proof, so anyone else's would let any
    // host on the segment take a working client's address (its next renewal would be NAKed).
    const ownAddress = ip !== undefined && (this.offersByMac.get(mac)?.ip === ip || lease?.ip === ip);
    if (!ownAddress || (serverId !== undefined && serverId !== this.config.interface.address)) {
      this.counters.ignored += 1;
      return;
    }
    // The address answered ARP for someone else: keep it out of the pool for a lease time. Only
    // pool addresses: a reservation is given whatever the table says, so an entry for one would
    // never be read nor freed, and the table stays bounded by the pools' size.
    if (this.subnets.some((s) => inPool(s, ip))) this.declinedUntil.set(ip, this.now() + this.config.leaseSeconds * 1000);
    this.forgetOffer(mac);
    if (lease?.ip === ip) this.deps.leases.delete(mac);
    this.counters.declines += 1;
  }

  private onInform(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    this.emit({ type: 'inform', mac, ip: request.ciaddr, arch: kind.arch, isIpxe: kind.isIpxe });
    const subnet = request.giaddr !== ZERO ? this.subnetByAddress(request.giaddr) : this.subnetByAddress(request.ciaddr);
    if (!subnet || request.ciaddr === ZERO) {
      this.counters.ignored += 1;
      return;
    }
    // RFC 2131 3.4: configuration only, no address and no lease time.
    const reply = this.reply(request, MessageType.ACK, subnet, ZERO, undefined);
    delete reply.options.leaseSeconds;
    delete reply.options.renewalSeconds;
    delete reply.options.rebindingSeconds;
    this.applyBoot(reply, decideBoot(kind, mac, this.config), kind, true);
    this.counters.informs += 1;
    this.send(reply, request);
    this.emit({ type: 'ack', mac, arch: kind.arch, isIpxe: kind.isIpxe });
  }

  // ---- ProxyDHCP -----------------------------------------------------------------------

  /**
   * ProxyDHCP (PXE spec 2.1): another server gives addresses; we answer boot clients only,
   * with boot information and no address, on port 67 (DISCOVER) and 4011 (REQUEST).
   */
  private handleProxy(request: DhcpPacket, datagram: InboundDatagram): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    const decision = decideBoot(kind, mac, this.config);
    const type = request.options.messageType;
    const forUs = request.options.serverId === undefined || request.options.serverId === this.config.interface.address;
    const answers =
      (type === MessageType.DISCOVER && datagram.arrival !== 'proxy') ||
      (type === MessageType.REQUEST && forUs && (datagram.arrival === 'proxy' || request.options.serverId !== undefined));
    if (type === MessageType.DISCOVER) this.emit({ type: 'discover', mac, arch: kind.arch, isIpxe: kind.isIpxe });
    if (type === MessageType.REQUEST) this.emit({ type: 'request', mac, arch: kind.arch, isIpxe: kind.isIpxe });
    if (!answers || decision.kind === 'none' || decision.kind === 'unsupported') {
      this.counters.ignored += 1;
      return;
    }
    if (!this.deps.addressBook.reservationFor(mac)) this.reportUnknown(mac, request, kind);
    const replyType = type === MessageType.DISCOVER ? MessageType.OFFER : MessageType.ACK;
    const reply = this.blankReply(request, replyType);
    reply.ciaddr = request.ciaddr;
    // The PXE spec: a proxy reply always carries "PXEClient", whatever boot it names.
    reply.options.vendorClassId = 'PXEClient';
    this.applyBoot(reply, decision, kind, false);
    if (replyType === MessageType.OFFER) this.counters.offers += 1;
    else this.counters.acks += 1;
    if (datagram.arrival === 'proxy') this.sendTo(reply, datagram.from.address, datagram.from.port);
    else this.send(reply, request);
    this.emit({ type: replyType === MessageType.OFFER ? 'offer' : 'ack', mac, arch: kind.arch, isIpxe: kind.isIpxe });
  }

  // ---- addresses -------------------------------------------------------------------------

  /** The subnet a client (not yet addressed) is on: the relay's, else the interface's own. */
  private subnetOfClient(request: DhcpPacket): Subnet | undefined {
    return this.subnetByAddress(request.giaddr !== ZERO ? request.giaddr : this.config.interface.address);
  }

  private subnetByAddress(ip: string): Subnet | undefined {
    return this.subnets.find((s) => inSubnet(s, ip));
  }

  /** Whether we know this client: a reservation, a live offer, or a lease (even expired). */
  private hasRecord(mac: string): boolean {
    return this.deps.addressBook.reservationFor(mac) !== undefined || this.offersByMac.has(mac) || this.deps.leases.get(mac) !== undefined;
  }

  /** The one address `mac` may have on `subnet` right now without a new allocation. */
  private addressFor(mac: string, subnet: Subnet): Reservation | undefined {
    const reservation = this.deps.addressBook.reservationFor(mac);
    if (reservation) return inSubnet(subnet, reservation.ip) ? reservation : undefined;
    const offer = this.offersByMac.get(mac);
    if (offer && inPool(subnet, offer.ip) && this.isFree(offer.ip, mac)) return { ip: offer.ip };
    const lease = this.deps.leases.get(mac);
    if (lease && inPool(subnet, lease.ip) && this.isFree(lease.ip, mac)) return { ip: lease.ip };
    return undefined;
  }

  private chooseAddress(mac: string, subnet: Subnet, reservation: Reservation | undefined, requested: string | undefined): Reservation | undefined {
    if (reservation) return inSubnet(subnet, reservation.ip) ? reservation : undefined;
    const current = this.addressFor(mac, subnet);
    if (current) return current;
    if (!subnet.pool) return undefined;
    if (requested && inPool(subnet, requested) && this.isFree(requested, mac)) return { ip: requested };
    const { start, end } = subnet.pool;
    const size = end - start + 1;
    const cursor = this.poolCursor.get(subnet) ?? 0;
    for (let step = 0; step < size; step++) {
      const offset = (cursor + step) % size;
      const ip = numberToIp(start + offset);
      if (this.isFree(ip, mac)) {
        this.poolCursor.set(subnet, (offset + 1) % size);
        return { ip };
      }
    }
    return undefined;
  }

  private isFree(ip: string, mac: string): boolean {
    const now = this.now();
    const declined = this.declinedUntil.get(ip);
    if (declined !== undefined) {
      if (declined > now) return false;
      this.declinedUntil.delete(ip);
    }
    const offeredTo = this.offeredIps.get(ip);
    if (offeredTo !== undefined && offeredTo !== mac && (this.offersByMac.get(offeredTo)?.expiresAt ?? 0) > now) return false;
    const lease = this.deps.leases.getByIp(ip);
    if (lease && lease.mac !== mac && lease.expiresAt > now) return false;
    return !this.deps.addressBook.isReserved(ip);
  }

  private holdOffer(mac: string, address: Reservation): void {
    if (this.offersByMac.size >= this.offerPruneAt) this.pruneExpiredOffers();
    this.forgetOffer(mac);
    const previous = this.offeredIps.get(address.ip);
    if (previous !== undefined) this.offersByMac.delete(previous);
    this.offersByMac.set(mac, { ...address, expiresAt: this.now() + this.config.offerSeconds * 1000 });
    this.offeredIps.set(address.ip, mac);
  }

  /** Clients that DISCOVER and never REQUEST would otherwise grow the offer table forever. */
  private pruneExpiredOffers(): void {
    const now = this.now();
    for (const [mac, offer] of this.offersByMac) if (offer.expiresAt <= now) this.forgetOffer(mac);
    // Doubling keeps the cost amortised when most pending offers are still live (a DISCOVER burst).
    this.offerPruneAt = Math.max(OFFER_PRUNE_THRESHOLD, this.offersByMac.size * 2);
  }

  private forgetOffer(mac: string): void {
    const offer = this.offersByMac.get(mac);
    if (!offer) return;
    this.offersByMac.delete(mac);
    if (this.offeredIps.get(offer.ip) === mac) this.offeredIps.delete(offer.ip);
  }

  // ---- replies ---------------------------------------------------------------------------

  private blankReply(request: DhcpPacket, type: MessageType): DhcpPacket {
    const options: DhcpOptions = { messageType: type, serverId: this.config.interface.address };
    // RFC 3046: relay agent information goes back to the relay unchanged.
    if (request.options.relayAgentInfo) options.relayAgentInfo = request.options.relayAgentInfo;
    return {
      op: BOOTREPLY,
      htype: request.htype,
      hlen: request.hlen,
      hops: 0,
      xid: request.xid,
      secs: 0,
      flags: type === MessageType.NAK && request.giaddr !== ZERO ? request.flags | BROADCAST_FLAG : request.flags,
      ciaddr: ZERO,
      yiaddr: ZERO,
      siaddr: ZERO,
      giaddr: request.giaddr,
      chaddr: request.chaddr,
      sname: '',
      file: '',
      options,
    };
  }

  private reply(request: DhcpPacket, type: MessageType, subnet: Subnet, ip: string, hostname: string | undefined): DhcpPacket {
    const reply = this.blankReply(request, type);
    if (type === MessageType.ACK) reply.ciaddr = request.ciaddr;
    reply.yiaddr = ip;
    const o = reply.options;
    o.leaseSeconds = this.config.leaseSeconds;
    // RFC 2131 4.4.5's defaults, sent rather than left to the client so every client renews alike.
    o.renewalSeconds = Math.floor(this.config.leaseSeconds * 0.5);
    o.rebindingSeconds = Math.floor(this.config.leaseSeconds * 0.875);
    o.subnetMask = subnet.mask;
    o.broadcastAddress = subnet.broadcastAddress;
    if (subnet.config.router) o.routers = [subnet.config.router];
    if (subnet.config.dnsServers.length > 0) o.dnsServers = subnet.config.dnsServers;
    if (subnet.config.domainName) o.domainName = subnet.config.domainName;
    if (hostname) o.hostname = hostname;
    return reply;
  }

  /** Adds what the client boots; `fullMode` adds iPXE's no-pxedhcp, since there is then no proxy to wait for. */
  private applyBoot(reply: DhcpPacket, decision: BootDecision, kind: ClientKind, fullMode: boolean): void {
    const o = reply.options;
    const tftpServer = this.config.boot.tftpServer ?? this.config.interface.address;
    const setFile = (name: string) => {
      o.bootfileName = name;
      // The header field holds 127 bytes; longer URLs travel in option 67 only.
      reply.file = Buffer.byteLength(name, 'latin1') <= 127 ? name : '';
    };
    switch (decision.kind) {
      case 'none':
      case 'unsupported':
        return;
      case 'tftp':
        reply.siaddr = tftpServer;
        o.tftpServerName = tftpServer;
        setFile(decision.file);
        o.vendorClassId = 'PXEClient';
        o.vendorSpecific = PXE_VENDOR_OPTIONS;
        return;
      case 'http':
        setFile(decision.url);
        o.vendorClassId = 'HTTPClient';
        return;
      case 'ipxe-script':
        reply.siaddr = tftpServer;
        setFile(decision.url);
        if (fullMode && kind.isIpxe) o.ipxe = IPXE_NO_PXEDHCP_OPTIONS;
        else if (!fullMode) o.vendorSpecific = PXE_VENDOR_OPTIONS;
        return;
    }
  }

  /** RFC 2131 4.1: to the relay; NAK broadcast; to ciaddr; else broadcast (we cannot unicast to an unARPed MAC). */
  private send(reply: DhcpPacket, request: DhcpPacket): void {
    if (request.giaddr !== ZERO) return this.sendTo(reply, request.giaddr, DHCP_SERVER_PORT);
    if (reply.options.messageType !== MessageType.NAK && request.ciaddr !== ZERO) {
      return this.sendTo(reply, request.ciaddr, DHCP_CLIENT_PORT);
    }
    this.sendTo(reply, LIMITED_BROADCAST, DHCP_CLIENT_PORT);
  }

  private sendTo(reply: DhcpPacket, address: string, port: number): void {
    this.transport.send(serializeDhcpPacket(reply), address, port).catch(() => {
      this.counters.sendErrors += 1;
    });
  }

  // ---- hooks -----------------------------------------------------------------------------

  private emit(event: DhcpEvent): void {
    if (event.ip === undefined) delete event.ip;
    if (!this.deps.onEvent) return;
    try {
      this.deps.onEvent(event);
    } catch {
      this.counters.hookErrors += 1;
    }
  }

  private reportUnknown(mac: string, request: DhcpPacket, kind: ClientKind): void {
    if (!this.deps.onUnknownClient) return;
    const info: UnknownClientInfo = { arch: kind.arch, isIpxe: kind.isIpxe };
    const o = request.options;
    if (o.vendorClassId !== undefined) info.vendorClassId = o.vendorClassId;
    if (o.hostname !== undefined) info.hostname = o.hostname;
    if (o.clientUuid !== undefined) info.uuid = o.clientUuid.toString('hex');
    if (request.giaddr !== ZERO) info.relay = request.giaddr;
    try {
      this.deps.onUnknownClient(mac, info);
    } catch {
      this.counters.hookErrors += 1;
    }
  }
}

function inSubnet(subnet: Subnet, ip: string): boolean {
  const n = ipToNumber(ip);
  return n > subnet.network && n < subnet.broadcast;
}

function inPool(subnet: Subnet, ip: string): boolean {
  if (!subnet.pool) return false;
  const n = ipToNumber(ip);
  return n >= subnet.pool.start && n <= subnet.pool.end;
}
