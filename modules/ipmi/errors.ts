// Typed failures of the IPMI client. Callers branch on the class (instanceof), never on
// message text: a wrong password, a silent BMC and a broken reply need different handling
// by the engine (stop and report, mark power unknown, report a faulty BMC).

/** Base of every error this module raises. */
export class IpmiError extends Error {
  override name = 'IpmiError';
}

/** The BMC never produced an acceptable reply within the retry budget. */
export class IpmiTimeoutError extends IpmiError {
  override name = 'IpmiTimeoutError';
  constructor(
    readonly what: string,
    readonly attempts: number,
    readonly elapsedMs: number,
  ) {
    super(`${what}: no reply after ${attempts} attempt(s) in ${elapsedMs} ms`);
  }
}

/** A reply could not be decoded: wrong length, bad checksum, bad integrity code, bad field. */
export class IpmiMalformedReplyError extends IpmiError {
  override name = 'IpmiMalformedReplyError';
  constructor(readonly detail: string) {
    super(`malformed IPMI reply: ${detail}`);
  }
}

/** RMCP+ status codes (IPMI v2.0 table 13-15), as the BMC reports them in session set-up replies. */
export const RMCP_PLUS_STATUS: Readonly<Record<number, string>> = {
  0x01: 'insufficient resources to create a session',
  0x02: 'invalid session ID',
  0x03: 'invalid payload type',
  0x04: 'invalid authentication algorithm',
  0x05: 'invalid integrity algorithm',
  0x06: 'no matching authentication payload',
  0x07: 'no matching integrity payload',
  0x08: 'inactive session ID',
  0x09: 'invalid role',
  0x0a: 'unauthorized role or privilege level requested',
  0x0b: 'insufficient resources to create a session at the requested role',
  0x0c: 'invalid name length',
  0x0d: 'unauthorized name',
  0x0e: 'unauthorized GUID',
  0x0f: 'invalid integrity check value',
  0x10: 'invalid confidentiality algorithm',
  0x11: 'no cipher suite match with proposed security algorithms',
  0x12: 'illegal or unrecognized parameter',
};

/** The status's name from the spec and its code, e.g. "unauthorized name (RMCP+ status 0x0d)". */
export function describeRmcpPlusStatus(status: number): string {
  const code = `RMCP+ status 0x${status.toString(16).padStart(2, '0')}`;
  const name = RMCP_PLUS_STATUS[status];
  return name === undefined ? `unknown ${code}` : `${name} (${code})`;
}

/**
 * Credentials or role refused: unknown user, wrong password (detected by us when the BMC's
 * RAKP 2 code does not match our key, or by the BMC in RAKP 3), or a privilege the user lacks.
 */
export class IpmiAuthenticationError extends IpmiError {
  override name = 'IpmiAuthenticationError';
  constructor(
    readonly stage: 'open-session' | 'rakp2' | 'rakp4',
    /** RMCP+ status from the BMC; undefined when our own check of its key exchange code failed. */
    readonly status: number | undefined,
    detail: string,
  ) {
    super(`IPMI authentication failed at ${stage}: ${detail}`);
  }
}

/** The BMC refused to open a session for a reason other than credentials (resources, algorithms). */
export class IpmiSessionError extends IpmiError {
  override name = 'IpmiSessionError';
  constructor(
    readonly stage: 'open-session' | 'rakp2' | 'rakp4',
    readonly status: number,
  ) {
    super(`IPMI session set-up refused at ${stage}: ${describeRmcpPlusStatus(status)}`);
  }
}

/** Completion codes shared by all commands (IPMI v2.0 table 5-2). */
const COMPLETION_CODES: Readonly<Record<number, string>> = {
  0xc0: 'node busy',
  0xc1: 'invalid command',
  0xc2: 'command invalid for given LUN',
  0xc3: 'timeout while processing command',
  0xc4: 'out of space',
  0xc5: 'reservation canceled or invalid',
  0xc6: 'request data truncated',
  0xc7: 'request data length invalid',
  0xc8: 'request data field length limit exceeded',
  0xc9: 'parameter out of range',
  0xca: 'cannot return number of requested data bytes',
  0xcb: 'requested sensor, data, or record not present',
  0xcc: 'invalid data field in request',
  0xcd: 'command illegal for specified sensor or record type',
  0xce: 'command response could not be provided',
  0xcf: 'cannot execute duplicated request',
  0xd0: 'SDR repository in update mode',
  0xd1: 'device in firmware update mode',
  0xd2: 'BMC initialization in progress',
  0xd3: 'destination unavailable',
  0xd4: 'insufficient privilege level',
  0xd5: 'command not supported in present state',
  0xd6: 'command sub-function disabled or unavailable',
  0xff: 'unspecified error',
};

/** The BMC answered a command with a non-zero completion code. */
export class IpmiCompletionCodeError extends IpmiError {
  override name = 'IpmiCompletionCodeError';
  constructor(
    readonly command: string,
    readonly code: number,
  ) {
    const text = COMPLETION_CODES[code] ?? 'command-specific error';
    super(`${command}: completion code 0x${code.toString(16).padStart(2, '0')} (${text})`);
  }
}

/** The client was used after close(). */
export class IpmiClosedError extends IpmiError {
  override name = 'IpmiClosedError';
  constructor() {
    super('IPMI client is closed');
  }
}
