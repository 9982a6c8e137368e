// Which address a client may have, for the full-mode handler: the configured subnets and their
// pools, reservations from the address book, offers held in memory until REQUESTed, bound leases
// in the lease store, and addresses held back after a DECLINE. No packets here: the handler asks,
// this answers and keeps the books.
import { ipToNumber, numberToIp, type DhcpPacket } from './codec.js';
import { cidrRange, type DhcpServerConfig, type SubnetConfig } from './config.js';
import type { AddressBook, Reservation } from './handler.js';
import type { Lease, LeaseStore } from './leases.js';
import { ZERO } from './responder.js';

export interface Subnet {
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

const OFFER_PRUNE_THRESHOLD = 4096;

export class AddressAllocator {
  private readonly subnets: Subnet[];
  private readonly offersByMac = new Map<string, Offer>();
  private readonly offeredIps = new Map<string, string>();
  /** Pool addresses a client DECLINEd (found in use by someone else), until the given time. */
  private readonly declinedUntil = new Map<string, number>();
  /** Where each subnet's pool scan resumes, so allocation does not rescan taken addresses. */
  private readonly poolCursor = new Map<Subnet, number>();
  private offerPruneAt = OFFER_PRUNE_THRESHOLD;

  constructor(
    private readonly config: DhcpServerConfig,
    private readonly addressBook: AddressBook,
    private readonly leases: LeaseStore,
    private readonly now: () => number,
  ) {
    this.subnets = config.subnets.map((s) => {
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
  }

  /** Addresses held out of the pools after a DECLINE; at most the pools' size. */
  get declinedCount(): number {
    return this.declinedUntil.size;
  }

  /** The subnet a client (not yet addressed) is on: the relay's, else the interface's own. */
  subnetOfClient(request: DhcpPacket): Subnet | undefined {
    return this.subnetByAddress(request.giaddr !== ZERO ? request.giaddr : this.config.interface.address);
  }

  subnetByAddress(ip: string): Subnet | undefined {
    return this.subnets.find((s) => inSubnet(s, ip));
  }

  reservationFor(mac: string): Reservation | undefined {
    return this.addressBook.reservationFor(mac);
  }

  /** Whether we know this client: a reservation, a live offer, or a lease (even expired). */
  hasRecord(mac: string): boolean {
    return this.addressBook.reservationFor(mac) !== undefined || this.offersByMac.has(mac) || this.leases.get(mac) !== undefined;
  }

  /** The one address `mac` may have on `subnet` right now without a new allocation. */
  addressFor(mac: string, subnet: Subnet): Reservation | undefined {
    const reservation = this.addressBook.reservationFor(mac);
    if (reservation) return inSubnet(subnet, reservation.ip) ? reservation : undefined;
    const offer = this.offersByMac.get(mac);
    if (offer && inPool(subnet, offer.ip) && this.isFree(offer.ip, mac)) return { ip: offer.ip };
    const lease = this.leases.get(mac);
    if (lease && inPool(subnet, lease.ip) && this.isFree(lease.ip, mac)) return { ip: lease.ip };
    return undefined;
  }

  /** The address to offer: the reservation, the client's current one, the one it asked for if free, else the next free in the pool. */
  chooseAddress(mac: string, subnet: Subnet, reservation: Reservation | undefined, requested: string | undefined): Reservation | undefined {
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

  holdOffer(mac: string, address: Reservation): void {
    if (this.offersByMac.size >= this.offerPruneAt) this.pruneExpiredOffers();
    this.forgetOffer(mac);
    const previous = this.offeredIps.get(address.ip);
    if (previous !== undefined) this.offersByMac.delete(previous);
    this.offersByMac.set(mac, { ...address, expiresAt: this.now() + this.config.offerSeconds * 1000 });
    this.offeredIps.set(address.ip, mac);
  }

  forgetOffer(mac: string): void {
    const offer = this.offersByMac.get(mac);
    if (!offer) return;
    this.offersByMac.delete(mac);
    if (this.offeredIps.get(offer.ip) === mac) this.offeredIps.delete(offer.ip);
  }

  /** The lease an ACK of `address` to `mac` binds, from now for the configured lease time. */
  leaseOf(mac: string, address: Reservation): Lease {
    const lease: Lease = { mac, ip: address.ip, expiresAt: this.now() + this.config.leaseSeconds * 1000 };
    if (address.hostname) lease.hostname = address.hostname;
    return lease;
  }

  /** Stores the leases in one call (throws when the store fails, binding none) and drops their offers. */
  bind(leases: Lease[]): void {
    this.leases.putMany(leases);
    for (const lease of leases) this.forgetOffer(lease.mac);
  }

  /** Frees the lease of `mac` when it is on `ip`; returns whether it was. */
  release(mac: string, ip: string): boolean {
    if (this.leases.get(mac)?.ip !== ip) return false;
    this.leases.delete(mac);
    return true;
  }

  /**
   * A client found `ip` in use by someone else. Honoured only for the address we gave this MAC:
   * DECLINE carries no proof, so anyone else's would let any host on the segment take a working
   * client's address (its next renewal would be NAKed). Returns whether it was honoured.
   */
  decline(mac: string, ip: string): boolean {
    const lease = this.leases.get(mac);
    if (this.offersByMac.get(mac)?.ip !== ip && lease?.ip !== ip) return false;
    // Keep it out of the pool for a lease time. Only pool addresses: a reservation is given
    // whatever the table says, so an entry for one would never be read nor freed, and the table
    // stays bounded by the pools' size.
    if (this.subnets.some((s) => inPool(s, ip))) this.declinedUntil.set(ip, this.now() + this.config.leaseSeconds * 1000);
    this.forgetOffer(mac);
    if (lease?.ip === ip) this.leases.delete(mac);
    return true;
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
    const lease = this.leases.getByIp(ip);
    if (lease && lease.mac !== mac && lease.expiresAt > now) return false;
    return !this.addressBook.isReserved(ip);
  }

  /** Clients that DISCOVER and never REQUEST would otherwise grow the offer table forever. */
  private pruneExpiredOffers(): void {
    const now = this.now();
    for (const [mac, offer] of this.offersByMac) if (offer.expiresAt <= now) this.forgetOffer(mac);
    // Doubling keeps the cost amortised when most pending offers are still live (a DISCOVER burst).
    this.offerPruneAt = Math.max(OFFER_PRUNE_THRESHOLD, this.offersByMac.size * 2);
  }
}

export function inSubnet(subnet: Subnet, ip: string): boolean {
  const n = ipToNumber(ip);
  return n > subnet.network && n < subnet.broadcast;
}

function inPool(subnet: Subnet, ip: string): boolean {
  if (!subnet.pool) return false;
  const n = ipToNumber(ip);
  return n >= subnet.pool.start && n <= subnet.pool.end;
}
