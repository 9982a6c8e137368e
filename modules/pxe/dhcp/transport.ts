// UDP sockets for a DHCP server on one interface, with Node's dgram only.
//
// Linux delivers a client's 255.255.255.255 broadcast only to sockets bound to 0.0.0.0 or
// to 255.255.255.255, and it routes a reply to 255.255.255.255 out of the right interface
// only when the sending socket is bound to that interface's address (from 0.0.0.0 it fails
// with ENETUNREACH when there is no default route; OVMF ignores the subnet broadcast).
// Without SO_BINDTODEVICE, binding 0.0.0.0:67 and ADDRESS:67 together needs SO_REUSEADDR
// on both, which would also let a second server share the port silently. So we bind
//   255.255.255.255:67  receives client broadcasts,
//   ADDRESS:67          receives unicasts (relays, renewing clients) and sends every reply,
// both without SO_REUSEADDR: any other server on port 67 then fails to bind (EADDRINUSE),
// and we fail if one is already there. Measured in a network namespace (kernel 6.x).
// The broadcast socket cannot tell which interface a broadcast came in on; a server serves
// one interface, other segments reach it through relays.
import dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
export const PXE_PROXY_PORT = 4011;

/** How a packet reached the server: as a client broadcast, unicast to port 67, or to the PXE port 4011. */
export type Arrival = 'broadcast' | 'unicast' | 'proxy';

export interface InboundDatagram {
  data: Buffer;
  from: { address: string; port: number };
  arrival: Arrival;
}

export interface DhcpTransport {
  open(onDatagram: (datagram: InboundDatagram) => void): Promise<void>;
  send(data: Buffer, address: string, port: number): Promise<void>;
  close(): Promise<void>;
}

export class DhcpBindError extends Error {
  constructor(
    readonly address: string,
    readonly port: number,
    readonly code: string,
    detail: string,
  ) {
    super(
      code === 'EADDRINUSE'
        ? `cannot bind ${address}:${port}: another DHCP server already uses port ${port} (EADDRINUSE); refusing to share it`
        : `cannot bind ${address}:${port}: ${detail}`,
    );
    this.name = 'DhcpBindError';
  }
}

/**
 * A boot storm arrives in bursts while the process may be descheduled; with the default
 * 208 KiB buffer the kernel dropped 8% of DISCOVERs at 1,000/s on a loaded machine
 * (RcvbufErrors). Not larger: with 4 MiB an overloaded server answered requests queued for
 * seconds, whose clients had already given up, and its throughput collapsed. The kernel
 * caps this at net.core.rmem_max; a smaller buffer still works.
 */
const RECEIVE_BUFFER_BYTES = 1024 * 1024;

function enlargeReceiveBuffer(socket: dgram.Socket): void {
  for (let size = RECEIVE_BUFFER_BYTES; size >= 256 * 1024; size /= 2) {
    try {
      socket.setRecvBufferSize(size);
      return;
    } catch {
      // above rmem_max on this host: try a smaller one
    }
  }
}

function bindSocket(address: string, port: number, arrival: Arrival, onDatagram: (d: InboundDatagram) => void): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    const onError = (error: NodeJS.ErrnoException) => {
      socket.close();
      reject(new DhcpBindError(address, port, error.code ?? 'EUNKNOWN', error.message));
    };
    socket.once('error', onError);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', onError);
      // Errors after binding (e.g. ICMP-induced) are per-datagram; the send callback reports them.
      socket.on('error', () => undefined);
      socket.setBroadcast(true);
      enlargeReceiveBuffer(socket);
      socket.on('message', (data, rinfo) => onDatagram({ data, from: { address: rinfo.address, port: rinfo.port }, arrival }));
      resolve(socket);
    });
  });
}

export class UdpDhcpTransport implements DhcpTransport {
  private sockets: dgram.Socket[] = [];
  private sender: dgram.Socket | undefined;

  /** `withProxyPort` also listens on ADDRESS:4011 for PXE ProxyDHCP requests. */
  constructor(
    private readonly interfaceName: string,
    private readonly address: string,
    private readonly withProxyPort: boolean,
  ) {}

  async open(onDatagram: (datagram: InboundDatagram) => void): Promise<void> {
    if (this.sockets.length > 0) throw new Error('transport already open');
    // Replies leave by the interface that owns the bound address; a mismatch would serve the wrong segment.
    const owned = networkInterfaces()[this.interfaceName];
    if (!owned) throw new Error(`interface ${this.interfaceName} does not exist`);
    if (!owned.some((a) => a.family === 'IPv4' && a.address === this.address)) {
      throw new Error(`interface ${this.interfaceName} does not have address ${this.address}`);
    }
    try {
      this.sender = await bindSocket(this.address, DHCP_SERVER_PORT, 'unicast', onDatagram);
      this.sockets.push(this.sender);
      this.sockets.push(await bindSocket('255.255.255.255', DHCP_SERVER_PORT, 'broadcast', onDatagram));
      if (this.withProxyPort) this.sockets.push(await bindSocket(this.address, PXE_PROXY_PORT, 'proxy', onDatagram));
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  send(data: Buffer, address: string, port: number): Promise<void> {
    const sender = this.sender;
    if (!sender) return Promise.reject(new Error('transport is not open'));
    return new Promise((resolve, reject) => sender.send(data, port, address, (error) => (error ? reject(error) : resolve())));
  }

  async close(): Promise<void> {
    const sockets = this.sockets;
    this.sockets = [];
    this.sender = undefined;
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
