// The ProxyDHCP handler (PXE spec 2.1): another server gives addresses; this one answers boot
// clients only, with boot information and no address, on port 67 (DISCOVER) and 4011 (REQUEST).
import { MessageType, macOf, type DhcpPacket } from './codec.js';
import { classifyClient } from './boot.js';
import type { AddressBook, DhcpHandler } from './handler.js';
import type { Responder } from './responder.js';
import type { InboundDatagram } from './transport.js';

export class ProxyHandler implements DhcpHandler {
  constructor(
    private readonly responder: Responder,
    private readonly addressBook: AddressBook,
  ) {}

  handle(request: DhcpPacket, datagram: InboundDatagram): void {
    const { config, counters } = this.responder;
    const mac = macOf(request);
    const kind = classifyClient(request.options);
    const decision = this.responder.decide(kind, mac);
    const type = request.options.messageType;
    const forUs = request.options.serverId === undefined || request.options.serverId === config.interface.address;
    const answers =
      (type === MessageType.DISCOVER && datagram.arrival !== 'proxy') ||
      (type === MessageType.REQUEST && forUs && (datagram.arrival === 'proxy' || request.options.serverId !== undefined));
    if (type === MessageType.DISCOVER) this.responder.emit({ type: 'discover', mac, arch: kind.arch, isIpxe: kind.isIpxe });
    if (type === MessageType.REQUEST) this.responder.emit({ type: 'request', mac, arch: kind.arch, isIpxe: kind.isIpxe });
    if (!answers || decision.kind === 'none' || decision.kind === 'unsupported') {
      counters.ignored += 1;
      return;
    }
    if (!this.addressBook.reservationFor(mac)) this.responder.reportUnknown(mac, request, kind);
    const replyType = type === MessageType.DISCOVER ? MessageType.OFFER : MessageType.ACK;
    const reply = this.responder.blankReply(request, replyType);
    reply.ciaddr = request.ciaddr;
    // The PXE spec: a proxy reply always carries "PXEClient", whatever boot it names.
    reply.options.vendorClassId = 'PXEClient';
    this.responder.applyBoot(reply, decision, kind, false);
    if (replyType === MessageType.OFFER) counters.offers += 1;
    else counters.acks += 1;
    if (datagram.arrival === 'proxy') this.responder.sendTo(reply, datagram.from.address, datagram.from.port);
    else this.responder.send(reply, request);
    this.responder.emit({ type: replyType === MessageType.OFFER ? 'offer' : 'ack', mac, arch: kind.arch, isIpxe: kind.isIpxe });
  }
}
