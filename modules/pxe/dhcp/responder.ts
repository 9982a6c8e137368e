// What the full and proxy handlers share to answer a client: the bare reply, the boot
// information in it, where it is sent (RFC 2131 4.1), and the events and unknown clients
// reported to the server's user, each counted.
import { BOOTREPLY, BROADCAST_FLAG, MessageType, serializeDhcpPacket, type DhcpOptions, type DhcpPacket } from './codec.js';
import { IPXE_NO_PXEDHCP_OPTIONS, PXE_VENDOR_OPTIONS, decideBoot, type BootDecision, type ClientKind } from './boot.js';
import type { DhcpServerConfig } from './config.js';
import type { DhcpCounters, DhcpEvent, DhcpHooks, UnknownClientInfo } from './handler.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, type DhcpTransport } from './transport.js';

export const ZERO = '0.0.0.0';
const LIMITED_BROADCAST = '255.255.255.255';

export class Responder {
  constructor(
    readonly config: DhcpServerConfig,
    readonly counters: DhcpCounters,
    private readonly transport: DhcpTransport,
    private readonly hooks: DhcpHooks,
  ) {}

  /** What this client boots, the server user's per-client program included. */
  decide(kind: ClientKind, mac: string): BootDecision {
    return decideBoot(kind, mac, this.config, this.hooks.uefiX64FileFor?.(mac));
  }

  blankReply(request: DhcpPacket, type: MessageType): DhcpPacket {
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

  /** Adds what the client boots; `fullMode` adds iPXE's no-pxedhcp, since there is then no proxy to wait for. */
  applyBoot(reply: DhcpPacket, decision: BootDecision, kind: ClientKind, fullMode: boolean): void {
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
  send(reply: DhcpPacket, request: DhcpPacket): void {
    if (request.giaddr !== ZERO) return this.sendTo(reply, request.giaddr, DHCP_SERVER_PORT);
    if (reply.options.messageType !== MessageType.NAK && request.ciaddr !== ZERO) {
      return this.sendTo(reply, request.ciaddr, DHCP_CLIENT_PORT);
    }
    this.sendTo(reply, LIMITED_BROADCAST, DHCP_CLIENT_PORT);
  }

  sendTo(reply: DhcpPacket, address: string, port: number): void {
    this.transport.send(serializeDhcpPacket(reply), address, port).catch(() => {
      this.counters.sendErrors += 1;
    });
  }

  emit(event: DhcpEvent): void {
    if (event.ip === undefined) delete event.ip;
    if (!this.hooks.onEvent) return;
    try {
      this.hooks.onEvent(event);
    } catch {
      this.counters.hookErrors += 1;
    }
  }

  reportUnknown(mac: string, request: DhcpPacket, kind: ClientKind): void {
    if (!this.hooks.onUnknownClient) return;
    const info: UnknownClientInfo = { arch: kind.arch, isIpxe: kind.isIpxe };
    const o = request.options;
    if (o.vendorClassId !== undefined) info.vendorClassId = o.vendorClassId;
    if (o.hostname !== undefined) info.hostname = o.hostname;
    if (o.clientUuid !== undefined) info.uuid = o.clientUuid.toString('hex');
    if (request.giaddr !== ZERO) info.relay = request.giaddr;
    try {
      this.hooks.onUnknownClient(mac, info);
    } catch {
      this.counters.hookErrors += 1;
    }
  }
}
