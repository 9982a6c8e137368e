// The TFTP server's configuration: parsed and checked once, at construction, so a
// transfer never meets an impossible block size or timeout.
import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from './codec.js';

const ipv4 = z
  .string()
  .regex(/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/, 'not a dotted-quad IPv4 address');

export const TftpServerConfigSchema = z.strictObject({
  /** The one IPv4 address listened on (PXE ROMs speak TFTP over IPv4); transfers use fresh ports on it too. */
  address: ipv4,
  /** 69 in production; 0 picks a free port (tests). */
  port: z.number().int().min(0).max(65535).default(69),
  /** Directory served by the default resolver; unused when a resolver is injected. */
  root: z.string().refine(isAbsolute, { message: 'must be an absolute path' }).optional(),
  /**
   * Largest block a client gets. 1468 fills a 1500-byte Ethernet frame (1500 − 20 IP − 8 UDP −
   * 4 TFTP): OVMF asks exactly that, iPXE asks 1432; bigger blocks would fragment.
   */
  maxBlockSize: z.number().int().min(MIN_BLOCK_SIZE).max(MAX_BLOCK_SIZE).default(1468),
  /** RFC 7440 window cap; OVMF asks 4. Kept far below 32768 so ACK numbers stay unambiguous across rollover. */
  maxWindowSize: z.number().int().min(1).max(64).default(16),
  /** Retransmission interval when the client negotiates none (RFC 2349 `timeout`). */
  timeoutMs: z.number().int().min(10).max(255_000).default(1000),
  /** Retransmissions of one window (or OACK) without progress before the transfer is given up. */
  retries: z.number().int().min(0).max(50).default(5),
  /** Concurrent transfers; a request beyond it is refused ("server busy") instead of exhausting descriptors. */
  maxTransfers: z.number().int().min(1).max(65_536).default(512),
  /**
   * Memory for whole files kept to serve many clients from one read (loaders, kernels);
   * least recently used files are dropped first. 0 turns the cache off.
   */
  cacheMaxBytes: z.number().int().min(0).default(128 << 20),
  /** Files larger than this are never cached; they are read in chunks for each transfer. */
  cacheMaxFileBytes: z.number().int().min(0).default(32 << 20),
  /**
   * Worker threads that run transfers of cached files (threads.ts), started with the first
   * such transfer; one per core by default, at most 4. 0 runs every transfer on the main thread.
   */
  transferThreads: z
    .number()
    .int()
    .min(0)
    .max(64)
    .default(() => Math.min(4, availableParallelism())),
});

export type TftpServerConfigInput = z.input<typeof TftpServerConfigSchema>;
export type TftpServerConfig = z.output<typeof TftpServerConfigSchema>;

export class TftpConfigError extends Error {
  override readonly name = 'TftpConfigError';
  constructor(readonly issues: string[]) {
    super(`invalid TFTP server configuration: ${issues.join('; ')}`);
  }
}

export function parseTftpServerConfig(input: unknown): TftpServerConfig {
  const parsed = TftpServerConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new TftpConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`));
  }
  return parsed.data;
}
