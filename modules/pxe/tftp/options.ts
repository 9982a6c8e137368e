// Option negotiation for a read request: RFC 2347 (framework), 2348 (blksize), 2349
// (timeout, tsize), 7440 (windowsize). Pure: the server passes in what the client asked
// and its own limits, and sends back exactly the accepted list as the OACK.
//
// An option we cannot honour is left out of the OACK rather than refused with error 8:
// RFC 2347 lets the client go on without it, and boot ROMs cope with that far better
// than with an error.
import { DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, type TftpOption } from './codec.js';

export interface NegotiationLimits {
  /** Larger requests are answered with this size (RFC 2348 lets the server lower it). */
  maxBlockSize: number;
  maxWindowSize: number;
}

export interface IgnoredOption extends TftpOption {
  reason: string;
}

export interface NegotiatedTransfer {
  /** The OACK's options, in the client's order; empty means no OACK, plain RFC 1350. */
  accepted: TftpOption[];
  ignored: IgnoredOption[];
  blockSize: number;
  windowSize: number;
  /** The client's retransmission timeout (RFC 2349), when it asked for one we accepted. */
  timeoutMs?: number;
}

/** A decimal integer, without sign, exponent or blanks: what every numeric TFTP option is. */
function parseDecimal(value: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(value)) return undefined;
  return Number(value);
}

export function negotiateOptions(requested: TftpOption[], limits: NegotiationLimits, fileSize: number): NegotiatedTransfer {
  const result: NegotiatedTransfer = { accepted: [], ignored: [], blockSize: DEFAULT_BLOCK_SIZE, windowSize: 1 };
  const ignore = (option: TftpOption, reason: string) => result.ignored.push({ ...option, reason });
  for (const option of requested) {
    const number = parseDecimal(option.value);
    switch (option.name) {
      case 'blksize':
        if (number === undefined || number < MIN_BLOCK_SIZE || number > MAX_BLOCK_SIZE) {
          ignore(option, `blksize must be ${MIN_BLOCK_SIZE}..${MAX_BLOCK_SIZE}`);
        } else {
          result.blockSize = Math.min(number, limits.maxBlockSize);
          result.accepted.push({ name: 'blksize', value: String(result.blockSize) });
        }
        break;
      case 'windowsize':
        if (number === undefined || number < 1 || number > 65535) {
          ignore(option, 'windowsize must be 1..65535');
        } else {
          result.windowSize = Math.min(number, limits.maxWindowSize);
          result.accepted.push({ name: 'windowsize', value: String(result.windowSize) });
        }
        break;
      case 'timeout':
        if (number === undefined || number < 1 || number > 255) {
          ignore(option, 'timeout must be 1..255 seconds');
        } else {
          result.timeoutMs = number * 1000;
          result.accepted.push({ name: 'timeout', value: String(number) });
        }
        break;
      case 'tsize':
        // A read request carries 0 (RFC 2349); any number still just asks for the size.
        if (number === undefined) ignore(option, 'tsize must be a decimal number');
        else result.accepted.push({ name: 'tsize', value: String(fileSize) });
        break;
      default:
        ignore(option, 'unknown option');
    }
  }
  return result;
}

/** Options named in full in the one log entry of a request; a request may carry thousands. */
const LOGGED_OPTIONS = 8;
/** Characters kept of each name and value in that entry. */
const LOGGED_CHARACTERS = 32;

/** One line for all the options a request had ignored: the first few, and how many more. */
export function describeIgnored(ignored: IgnoredOption[]): string {
  const clip = (text: string) => (text.length > LOGGED_CHARACTERS ? `${text.slice(0, LOGGED_CHARACTERS)}…` : text);
  const listed = ignored.slice(0, LOGGED_OPTIONS).map((o) => `${clip(o.name)}=${clip(o.value)} (${o.reason})`);
  const more = ignored.length > LOGGED_OPTIONS ? ` and ${ignored.length - LOGGED_OPTIONS} more` : '';
  return `${ignored.length} option${ignored.length === 1 ? '' : 's'} ignored: ${listed.join(', ')}${more}`;
}
