// The full-mode handler (RFC 2131): addresses and boot information. It reads each message by
// its type and the client's state, asks the allocator which address the client may have, and
// answers; ACKs wait until their leases are stored.
import { MessageType, macOf, type DhcpPacket } from './codec.js';
import { classifyClient, type ClientKind } from './boot.js';
import { inSubnet, type AddressAllocator, type Subnet } from './allocation.js';
import type { DhcpHandler, Reservation } from './handler.js';
import type { Lease } from './leases.js';
import { ZERO, type Responder } from './responder.js';

export class FullHandler implements DhcpHandler {
  private pendingAcks: Array<{ lease: Lease; reply: DhcpPacket; request: DhcpPacket; kind: ClientKind }> = [];

  constructor(
    private readonly responder: Responder,
    private readonly addresses: AddressAllocator,
  ) {}

  private get config() {
    return this.responder.config;
  }

  private get counters() {
    return this.responder.counters;
  }

  handle(request: DhcpPacket): void {
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
    this.responder.emit({ type: 'discover', mac, arch: kind.arch, isIpxe: kind.isIpxe });
    const subnet = this.addresses.subnetOfClient(request);
    if (!subnet) {
      this.counters.ignored += 1;
      return;
    }
    const reservation = this.addresses.reservationFor(mac);
    if (!reservation) this.responder.reportUnknown(mac, request, kind);
    const address = this.addresses.chooseAddress(mac, subnet, reservation, request.options.requestedIp);
    if (!address) {
      this.counters.noAddress += 1;
      return;
    }
    this.addresses.holdOffer(mac, address);
    const reply = this.reply(request, MessageType.OFFER, subnet, address.ip, address.hostname);
    this.responder.applyBoot(reply, this.responder.decide(kind, mac), kind, true);
    this.counters.offers += 1;
    this.responder.send(reply, request);
    this.responder.emit({ type: 'offer', mac, ip: address.ip, arch: kind.arch, isIpxe: kind.isIpxe });
  }

  /** RFC 2131 4.3.2: the client's state is told by server id, requested address and ciaddr. */
  private onRequest(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    const { serverId, requestedIp } = request.options;
    const ciaddr = request.ciaddr === ZERO ? undefined : request.ciaddr;
    this.responder.emit({ type: 'request', mac, ip: requestedIp ?? ciaddr, arch: kind.arch, isIpxe: kind.isIpxe });

    if (serverId !== undefined) {
      // SELECTING: the client chose an offer. Another server's: forget ours.
      if (serverId !== this.config.interface.address) {
        this.addresses.forgetOffer(mac);
        this.counters.foreignServer += 1;
        return;
      }
      const subnet = this.addresses.subnetOfClient(request);
      const ip = requestedIp ?? ciaddr;
      if (!subnet || !ip) {
        this.counters.ignored += 1;
        return;
      }
      const allowed = this.addresses.addressFor(mac, subnet);
      if (allowed && allowed.ip === ip) this.acknowledge(request, subnet, allowed, kind);
      else this.refuse(request, kind);
      return;
    }

    if (requestedIp !== undefined && !ciaddr) {
      // INIT-REBOOT: the client remembers an address; NAK if wrong, silent if we have no record.
      const subnet = this.addresses.subnetOfClient(request);
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
      const subnet = request.giaddr !== ZERO ? this.addresses.subnetByAddress(request.giaddr) : this.addresses.subnetByAddress(ciaddr);
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
    if (!this.addresses.hasRecord(mac)) {
      this.counters.ignored += 1;
      return;
    }
    const allowed = this.addresses.addressFor(mac, subnet);
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
    const lease = this.addresses.leaseOf(mac, address);
    const reply = this.reply(request, MessageType.ACK, subnet, address.ip, address.hostname);
    this.responder.applyBoot(reply, this.responder.decide(kind, mac), kind, true);
    this.pendingAcks.push({ lease, reply, request, kind });
    if (this.pendingAcks.length === 1) setImmediate(() => this.flush());
  }

  flush(): void {
    const batch = this.pendingAcks;
    if (batch.length === 0) return;
    this.pendingAcks = [];
    try {
      this.addresses.bind(batch.map((b) => b.lease));
    } catch {
      // No ACK for a lease we could not store; the client retries its REQUEST.
      this.counters.storeErrors += batch.length;
      return;
    }
    for (const { lease, reply, request, kind } of batch) {
      this.counters.acks += 1;
      this.responder.send(reply, request);
      this.responder.emit({ type: 'ack', mac: lease.mac, ip: lease.ip, arch: kind.arch, isIpxe: kind.isIpxe });
    }
  }

  private refuse(request: DhcpPacket, kind: ClientKind): void {
    const mac = macOf(request);
    this.addresses.forgetOffer(mac);
    const reply = this.responder.blankReply(request, MessageType.NAK);
    this.counters.naks += 1;
    this.responder.send(reply, request);
    this.responder.emit({ type: 'nak', mac, arch: kind.arch, isIpxe: kind.isIpxe });
  }

  private onRelease(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    this.responder.emit({ type: 'release', mac, ip: request.ciaddr, arch: kind.arch, isIpxe: kind.isIpxe });
    const serverId = request.options.serverId;
    if ((serverId !== undefined && serverId !== this.config.interface.address) || !this.addresses.release(mac, request.ciaddr)) {
      this.counters.ignored += 1;
      return;
    }
    this.counters.releases += 1;
  }

  private onDecline(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    const ip = request.options.requestedIp;
    this.responder.emit({ type: 'decline', mac, ip, arch: kind.arch, isIpxe: kind.isIpxe });
    const serverId = request.options.serverId;
    if (!ip || (serverId !== undefined && serverId !== this.config.interface.address) || !this.addresses.decline(mac, ip)) {
      this.counters.ignored += 1;
      return;
    }
    this.counters.declines += 1;
  }

  private onInform(request: DhcpPacket): void {
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    this.responder.emit({ type: 'inform', mac, ip: request.ciaddr, arch: kind.arch, isIpxe: kind.isIpxe });
    const subnet = request.giaddr !== ZERO ? this.addresses.subnetByAddress(request.giaddr) : this.addresses.subnetByAddress(request.ciaddr);
    if (!subnet || request.ciaddr === ZERO) {
      this.counters.ignored += 1;
      return;
    }
    // RFC 2131 3.4: configuration only, no address and no lease time.
    const reply = this.reply(request, MessageType.ACK, subnet, ZERO, undefined);
    delete reply.options.leaseSeconds;
    delete reply.options.renewalSeconds;
    delete reply.options.rebindingSeconds;
    this.responder.applyBoot(reply, this.responder.decide(kind, mac), kind, true);
    this.counters.informs += 1;
    this.responder.send(reply, request);
    this.responder.emit({ type: 'ack', mac, arch: kind.arch, isIpxe: kind.isIpxe });
  }

  /** A reply with an address and the subnet's options. */
  private reply(request: DhcpPacket, type: MessageType, subnet: Subnet, ip: string, hostname: string | undefined): DhcpPacket {
    const reply = this.responder.blankReply(request, type);
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
}
