// The lab's API forward must close while a client still holds a connection through it (the
// cluster suite's teardown once hung for 60 s on an open keep-alive connection).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketForward } from './forward.js';

let dir: string;
let upstream: Server | undefined;
const serverSockets = new Set<Socket>();

afterEach(async () => {
  for (const socket of serverSockets) socket.destroy();
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** A unix-socket server that echoes and never hangs up, like an SSE stream. */
async function echoServer(): Promise<string> {
  dir = mkdtempSync(join(tmpdir(), 'shoal-forward-'));
  const path = join(dir, 'api.sock');
  upstream = createServer((socket) => {
    serverSockets.add(socket);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => upstream!.listen(path, resolve));
  return path;
}

describe('SocketForward', () => {
  it('forwards bytes both ways, then closes at once with a connection still open, destroying it', async () => {
    const forward = await SocketForward.listen(await echoServer());
    const port = Number(new URL(forward.url).port);
    const client = connect(port, '127.0.0.1');
    const echoed = new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString())));
    client.write('ping');
    expect(await echoed).toBe('ping');
    expect(forward.connections).toBe(2);

    const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    // Rejects if the server is still waiting for the open connection after 2 s.
    await forward.close(2_000);
    await clientClosed;
    expect(forward.connections).toBe(0);
  });

  it('names the port when it is taken', async () => {
    const first = await SocketForward.listen(await echoServer());
    const port = Number(new URL(first.url).port);
    await expect(SocketForward.listen(join(dir, 'api.sock'), port)).rejects.toThrow(`127.0.0.1:${port} is in use`);
    await first.close();
  });
});
