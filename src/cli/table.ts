// Plain-text tables for the terminal, one formatter for every listing; colour only when stdout is
// a terminal.
import { HARDWARE_FACET, describeHardware, parseHardware } from '../contracts/hardware.js';
import type { NodeView } from '../api/views.js';

const COLOURS: Record<string, string> = { converged: '32', converging: '36', failed: '31', blocked: '31', frozen: '34' };

export function phaseColour(phase: string, text: string): string {
  const code = COLOURS[phase];
  return code && process.stdout.isTTY ? `\x1b[${code}m${text}\x1b[0m` : text;
}

/** Left-aligned columns two spaces apart under a header; the cells of one column coloured by the phase each stands for. */
export function formatColumns(header: string[], rows: string[][], colour?: { column: number; phaseOf: (cell: string) => string }): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[], coloured: boolean) =>
    cells
      .map((cell, c) => {
        const padded = cell.padEnd(widths[c]!);
        return coloured && c === colour?.column ? phaseColour(colour.phaseOf(cell), padded) : padded;
      })
      .join('  ')
      .trimEnd();
  return [line(header, false), ...rows.map((r) => line(r, true))].join('\n');
}

/** The nodes as `node list` and `watch` show them: phase, the standard facets observed, desired, step or reason. */
export function renderNodeTable(nodes: NodeView[]): string {
  const rows = nodes.map((n) => [
    n.name,
    n.phase,
    n.observed.power?.value ?? '-',
    n.observed.boot?.value ?? '-',
    n.observed.run?.value ?? '-',
    n.observed.image?.value ?? '-',
    Object.entries(n.desired)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ') || '-',
    n.reason ?? (n.step ? `${n.step.waiting ? `(${n.step.waiting}) ` : ''}${n.step.name}` : ''),
  ]);
  return formatColumns(['NODE', 'PHASE', 'POWER', 'BOOT', 'RUN', 'IMAGE', 'DESIRED', 'STEP / REASON'], rows, { column: 1, phaseOf: (phase) => phase });
}

/** One node as `node show` prints it: identity, then desired and observed facet by facet, then its reported hardware. */
export function renderNodeDetail(n: NodeView): string {
  const lines = [
    `${n.name}  ${phaseColour(n.phase, n.phase)}${n.frozen ? ' (frozen)' : ''}${n.reason ? `: ${n.reason}` : ''}`,
    `  id        ${n.id}`,
    `  macs      ${n.macs.join(', ') || '-'}`,
    `  bmc       ${n.bmc}`,
    `  arch      ${n.arch}, firmware ${n.firmware}${n.ipv4 ? `, ipv4 ${n.ipv4}` : ''}`,
    `  labels    ${Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(' ') || '-'}`,
  ];
  if (n.step) lines.push(`  step      ${n.step.waiting ? `(${n.step.waiting}) ` : ''}${n.step.name}, attempt ${n.step.attempt}`);
  if (n.lastError) lines.push(`  error     ${n.lastError}`);
  const facets = [...new Set([...Object.keys(n.desired), ...Object.keys(n.observed)])].filter((f) => f !== HARDWARE_FACET);
  const rows = facets.map((f) => {
    const o = n.observed[f];
    return [f, n.desired[f] ?? '-', o ? `${o.value}${o.detail ? ` (${o.detail})` : ''}` : '-', o ? `${new Date(o.at).toISOString()} by ${o.source}` : ''];
  });
  lines.push('', formatColumns(['FACET', 'DESIRED', 'OBSERVED', 'SEEN'], rows).replace(/^/gm, '  '));
  const hardware = parseHardware(n.observed[HARDWARE_FACET]?.detail);
  lines.push('', hardware ? `  hardware (reported ${new Date(n.observed[HARDWARE_FACET]!.at).toISOString()})` : '  hardware  not reported yet (the agent reports it at its hello)');
  if (hardware) lines.push(...describeHardware(hardware).map((l) => `    ${l}`));
  return lines.join('\n');
}
