// The wire format of images/agent/PROTOCOL.md (version 2), appliance side: request bodies as the
// agent sends them, validated at the edge, and the `key=value` replies it understands.
import { z } from 'zod';
import { HardwareSchema } from '../../src/contracts/hardware.js';

// The alphabets PROTOCOL.md guarantees; anything outside them is not from our agent.
const NODE_ID = /^[A-Za-z0-9._-]+$/;
const BOOT_ID = /^[0-9a-f-]+$/;
const IMAGE_REF = /^[A-Za-z0-9._@+-]+$/;
const TOKEN = /^[A-Za-z0-9._~+/=-]+$/;

const nodeId = z.string().max(128).regex(NODE_ID);
const bootId = z.string().min(1).max(64).regex(BOOT_ID);
const uptime = z.number().nonnegative();

/**
 * `systemctl is-system-running` on a node whose init is systemd (running, degraded, starting…);
 * absent elsewhere (the initramfs). Any lower-case word: a state a newer systemd adds must not
 * make the heartbeat, and so the node, fail.
 */
const systemState = z.string().min(1).max(32).regex(/^[a-z]+$/);

/** What a hello says of kexec: `ready`, or why not (no kexec command, loading disabled, a kernel without kexec). */
export const KexecSupportSchema = z.enum(['ready', 'no-tool', 'disabled', 'unsupported']);
export type KexecSupport = z.infer<typeof KexecSupportSchema>;

export const HelloSchema = z.object({
  node: nodeId,
  bootId,
  image: z.string().max(128).regex(IMAGE_REF).nullable(),
  bakedImage: z.string().max(128).regex(IMAGE_REF).nullable(),
  kernel: z.string().max(256),
  uptime,
  interfaces: z
    .array(
      z.object({
        name: z.string().max(64),
        mac: z.string().max(64),
        ipv4: z.array(z.string().max(64)).max(64),
      }),
    )
    .max(256),
  /** Absent from agents built before it was added: their hello is still good. */
  hardware: HardwareSchema.optional(),
  system: systemState.optional(),
  /** The digest of the configuration this boot was given (its NoCloud meta-data's instance-id), when it had one. */
  config: z.string().regex(/^[0-9a-f]{64}$/).optional(),
  /** Whether this boot can kexec into the next one (absent from agents built before it: then it cannot). */
  kexec: KexecSupportSchema.optional(),
});
export type Hello = z.infer<typeof HelloSchema>;

export const AgentStateSchema = z.enum(['running', 'draining', 'drained']);
export type AgentState = z.infer<typeof AgentStateSchema>;

/** What a disk job (write-disk, erase-disk) is doing, as heartbeats carry it. */
export const DiskJobStateSchema = z.enum(['writing', 'written', 'erasing', 'erased', 'failed']);
export type DiskJobState = z.infer<typeof DiskJobStateSchema>;
export const DISK_JOB_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** What a kexec job is doing, as heartbeats carry it: `executing` is said once the new kernel is loaded, just before the agent goes. */
export const KexecJobStateSchema = z.enum(['loading', 'executing', 'failed']);
export const KEXEC_JOB_ID = DISK_JOB_ID;

/** The body of a heartbeat, and of a drained report (whose state is always `drained`). */
export const StatusReportSchema = z.object({
  node: nodeId,
  bootId,
  uptime,
  state: AgentStateSchema,
  system: systemState.optional(),
  disk: DiskJobStateSchema.optional(),
  diskJob: z.string().regex(DISK_JOB_ID).optional(),
  diskBytes: z.number().int().nonnegative().max(2 ** 60).optional(),
  diskSha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
  diskError: z.string().max(200).regex(/^[A-Za-z0-9 ._:/()@+,#-]*$/).optional(),
  kexec: KexecJobStateSchema.optional(),
  kexecJob: z.string().regex(KEXEC_JOB_ID).optional(),
  kexecError: z.string().max(200).regex(/^[A-Za-z0-9 ._:/()@+,#-]*$/).optional(),
});
export type StatusReport = z.infer<typeof StatusReportSchema>;
export const DrainedReportSchema = StatusReportSchema.extend({ state: z.literal('drained') });

/** The actions the appliance asks for (PROTOCOL.md also has `poweroff`; power belongs to the BMC modules). */
export type AgentAction = 'none' | 'drain' | 'reboot' | 'kexec' | 'write-disk' | 'erase-disk';

/**
 * The `token` of a request body: the credential travels in the body, not a header, because busybox
 * wget can send a body from a file but takes headers only as arguments, which any user on the node
 * can read in /proc. Absent: undefined; present but not a token string: 'invalid'.
 */
export function bodyToken(body: unknown): string | undefined | 'invalid' {
  const token = typeof body === 'object' && body !== null ? (body as { token?: unknown }).token : undefined;
  if (token === undefined) return undefined;
  return typeof token === 'string' && token.length <= 512 && TOKEN.test(token) ? token : 'invalid';
}

/**
 * A reply; `token` is the boot token, handed out only in the reply to the hello that spent a
 * bootstrap; `lines` are the action's own keys (a disk job's `disk.…=` lines).
 */
export function formatReply(intervalSeconds: number, action: AgentAction, token?: string, lines: readonly string[] = []): string {
  return `interval=${intervalSeconds}\naction=${action}\n${token === undefined ? '' : `token=${token}\n`}${lines.map((l) => `${l}\n`).join('')}`;
}
