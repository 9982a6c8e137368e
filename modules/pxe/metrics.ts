// The pxe module's Prometheus metrics, on the appliance's registry (served at /metrics): the
// DHCP server's counters one for one, TFTP transfers and refusals, and the boot files served
// over HTTP, so an operator can tell where a rack's boots stop without reading logs.
import { Counter, type Registry } from 'prom-client';
import type { DhcpCounters } from './dhcp/index.js';
import type { TftpLogEvent, TransferObservation } from './tftp/index.js';

const DHCP_HELP: Record<keyof DhcpCounters, string> = {
  received: 'DHCP datagrams received',
  malformed: 'DHCP datagrams that did not parse or were not a client request',
  ignored: 'DHCP requests not answered (not ours, not a boot client in proxy mode, no record)',
  foreignServer: "DHCP REQUESTs that selected another server's offer",
  noAddress: 'DHCP DISCOVERs for which no address could be given',
  offers: 'DHCP OFFERs sent',
  acks: 'DHCP ACKs sent',
  naks: 'DHCP NAKs sent',
  releases: 'DHCP RELEASEs honoured',
  declines: 'DHCP DECLINEs honoured',
  informs: 'DHCP INFORMs answered',
  sendErrors: 'DHCP replies the socket failed to send',
  storeErrors: 'DHCP ACKs not sent because their leases could not be stored',
  handlerErrors: 'DHCP requests dropped because handling them threw',
  hookErrors: "Exceptions thrown by the pxe module's DHCP event hooks",
};

/** TFTP log events that mean a request was answered with an error instead of a transfer. */
const TFTP_REFUSALS: ReadonlySet<TftpLogEvent> = new Set(['not-found', 'denied', 'malformed', 'refused']);

export type BootFileRoute = 'script' | 'kernel' | 'initrd' | 'rootfs';
/**
 * network: an iPXE script (or a Secure Boot node's GRUB config) that boots an image; local: one that
 * exits to the next boot device; served: a kernel or initrd sent over TFTP to GRUB.
 */
export type BootFileOutcome = 'network' | 'local' | 'redirected' | 'served' | 'not-found' | 'rate-limited' | 'elsewhere';

export class PxeMetrics {
  private readonly tftpTransfers: Counter<'outcome'>;
  private readonly tftpBytes: Counter;
  private readonly tftpRefused: Counter<'reason'>;
  private readonly bootFiles: Counter<'route' | 'outcome'>;

  constructor(private readonly registry: Registry) {
    this.tftpTransfers = new Counter({
      name: 'shoal_tftp_transfers_total',
      help: 'TFTP transfers ended, by outcome (complete, probe: the client read the size and stopped, error)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    });
    this.tftpBytes = new Counter({ name: 'shoal_tftp_bytes_total', help: 'File bytes TFTP clients acknowledged', registers: [registry] });
    this.tftpRefused = new Counter({
      name: 'shoal_tftp_refused_total',
      help: 'TFTP requests answered with an error, by reason (not-found, denied, malformed, refused)',
      labelNames: ['reason'] as const,
      registers: [registry],
    });
    this.bootFiles = new Counter({
      name: 'shoal_pxe_boot_files_total',
      help: 'Boot files requested over HTTP (and over TFTP by the Secure Boot path\'s GRUB), by route (script, kernel, initrd) and outcome (network, local, redirected, served, not-found, rate-limited)',
      labelNames: ['route', 'outcome'] as const,
      registers: [registry],
    });
  }

  /** One counter per DHCP server counter, read from it at each scrape: shoal_dhcp_<name>_total. */
  watchDhcp(counters: DhcpCounters): void {
    for (const key of Object.keys(DHCP_HELP) as Array<keyof DhcpCounters>) {
      new Counter({
        name: `shoal_dhcp_${key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_total`,
        help: DHCP_HELP[key],
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(counters[key]);
        },
      });
    }
  }

  tftpTransfer(observation: TransferObservation): void {
    if (observation.event === 'start') return;
    this.tftpTransfers.inc({ outcome: observation.event });
    this.tftpBytes.inc(observation.bytes);
  }

  tftpLog(event: TftpLogEvent): void {
    if (TFTP_REFUSALS.has(event)) this.tftpRefused.inc({ reason: event });
  }

  bootFile(route: BootFileRoute, outcome: BootFileOutcome): void {
    this.bootFiles.inc({ route, outcome });
  }
}
