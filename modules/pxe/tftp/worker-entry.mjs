// Entry of a TFTP transfer thread in a source checkout: the thread loads worker.ts through
// tsx, as bin/shoal.js does for the CLI. A compiled build starts worker.js directly.
import { workerData } from 'node:worker_threads';

const { register } = await import('tsx/esm/api');
register();
await import(workerData.entry);
