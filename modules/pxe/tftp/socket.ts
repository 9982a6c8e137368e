// UDP sockets for the TFTP server: the listening socket and each transfer's own (its TID).
// Shared by the server and the transfer threads, which open their transfer sockets themselves.
import { createSocket, type Socket } from 'node:dgram';
import type { TftpPeer } from './resolver.js';

/** Starting failed: the port is taken, privileged, or the address is not local. */
export class TftpBindError extends Error {
  override readonly name = 'TftpBindError';
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

function bindErrorMessage(error: NodeJS.ErrnoException, address: string, port: number): string {
  const where = `${address}:${port}`;
  switch (error.code) {
    case 'EADDRINUSE':
      return `TFTP port ${where} is already in use (is another TFTP server, e.g. tftpd-hpa, running?)`;
    case 'EACCES':
      return `TFTP port ${where} needs root or CAP_NET_BIND_SERVICE`;
    case 'EADDRNOTAVAIL':
      return `TFTP address ${address} is not an address of this host`;
    default:
      return `cannot bind TFTP ${where}: ${error.message}`;
  }
}

export function bindUdp(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // No reuseAddr: a second server on the same port must fail loudly, not share requests.
    const socket = createSocket({ type: 'udp4', reuseAddr: false });
    const onError = (error: NodeJS.ErrnoException) => {
      socket.close();
      reject(new TftpBindError(bindErrorMessage(error, address, port), error.code));
    };
    socket.once('error', onError);
    socket.bind({ address, port, exclusive: true }, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** A socket on a fresh port of `address`, connected to the client so the kernel drops datagrams from any other TID. */
export async function openTransferSocket(address: string, client: TftpPeer): Promise<Socket> {
  const socket = await bindUdp(address, 0);
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      socket.close();
      reject(error);
    };
    socket.once('error', onError);
    socket.connect(client.port, client.address, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
