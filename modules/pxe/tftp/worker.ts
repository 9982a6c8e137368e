// The body of a transfer thread (see threads.ts): it opens each transfer's socket and runs
// the ReadTransfer on its own event loop, over file contents shared with the main thread
// (SharedArrayBuffer, never copied), and reports every observation back.
import { parentPort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { bufferSource } from './resolver.js';
import { openTransferSocket } from './socket.js';
import type { ThreadInbound, ThreadOutbound } from './threads.js';
import { ReadTransfer } from './transfer.js';

const port = parentPort;
if (port === null) throw new Error('worker.ts runs as a TFTP transfer thread, not on its own');
const post = (message: ThreadOutbound) => port.postMessage(message);

const transfers = new Map<number, ReadTransfer>();
/** Transfers aborted while their socket was still opening. */
const abortedEarly = new Set<number>();

async function start(message: Extract<ThreadInbound, { type: 'start' }>): Promise<void> {
  const { id, request } = message;
  let socket;
  try {
    socket = await openTransferSocket(request.address, request.client);
  } catch (error) {
    post({ type: 'open-failed', id, message: String(error) });
    return;
  }
  if (abortedEarly.delete(id)) {
    socket.close();
    post({ type: 'open-failed', id, message: 'server is shutting down' });
    return;
  }
  const { contents } = request;
  const transfer = new ReadTransfer({
    socket,
    source: bufferSource(Buffer.from(contents.buffer, contents.byteOffset, contents.byteLength)),
    path: request.path,
    client: request.client,
    // The threads' clocks start at different times; the epoch time they share.
    requestedAt: request.requestedAtEpochMs - performance.timeOrigin,
    parameters: request.parameters,
    observe: (observation) => post({ type: 'observation', id, observation }),
  });
  transfers.set(id, transfer);
  post({ type: 'started', id });
  void transfer.done.then(() => {
    transfers.delete(id);
    post({ type: 'done', id });
  });
  transfer.start();
}

port.on('message', (message: ThreadInbound) => {
  if (message.type === 'start') void start(message);
  else if (message.type === 'abort') {
    const transfer = transfers.get(message.id);
    if (transfer) transfer.abort();
    else abortedEarly.add(message.id);
  }
});
post({ type: 'ready' });
