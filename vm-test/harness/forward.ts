// A loopback TCP port whose connections are piped to a unix socket: how tools outside a lab's
// namespace (the test process, the CLI, a browser) reach the appliance's API socket inside it.
// close() destroys the connections still open instead of waiting for their peers to hang up:
// a keep-alive client or an SSE stream would otherwise hold a suite's teardown forever.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { withDeadline } from '../../src/deadline.js';

export class SocketForward {
  private constructor(
    private readonly server: Server,
    /** Both ends of every connection through the forward. */
    private readonly open: Set<Socket>,
    /** The loopback URL of the forward. */
    readonly url: string,
  ) {}

  /** Listens on 127.0.0.1:`port` (0: any free port) and forwards each connection to `socketPath`, opened anew per connection. */
  static async listen(socketPath: string, port = 0): Promise<SocketForward> {
    const open = new Set<Socket>();
    const server = createServer((client) => {
      const upstream = createConnection(socketPath);
      for (const end of [client, upstream]) {
        open.add(end);
        end.once('close', () => open.delete(end));
        end.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new Error(`127.0.0.1:${port} is in use; pick another port`) : err));
      server.listen(port, '127.0.0.1', resolve);
    });
    return new SocketForward(server, open, `http://127.0.0.1:${(server.address() as { port: number }).port}`);
  }

  /** Connections open through the forward (both ends counted). */
  get connections(): number {
    return this.open.size;
  }

  /** Stops listening and destroys every open connection; rejects, naming the forward, if the server still has not closed after `ms`. */
  async close(ms = 5_000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.open) socket.destroy();
    this.open.clear();
    await withDeadline(`the forward to ${this.url} to close`, ms, closed);
  }
}
